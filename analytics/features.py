"""From a machine's signals to feature rows: a regular time grid, then sliding windows.

Detectors see one row per window step: for every signal its level (mean), spread (log of the
standard deviation) and slope (least-squares, units per second) over the window, and level and
spread again over the last few seconds of it (the short window). Level catches offsets, slope a
drift long before its level leaves the normal band, spread a rough bearing and a frozen reading:
on a log scale a stuck sensor's spread (exactly 0) is far out, where a linear spread could only
fall by one normal spread. The long window sees small, slow changes through the noise; the short
one sees a step within seconds, before it has moved a 30 s mean by much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FEATURE_KINDS = ("level", "spread", "slope", "short_level", "short_spread")
SPREAD_FLOOR = 1e-9  # log spread of a constant window: far below any real sensor's noise
_GRID_TOLERANCE = 1e-6  # of a period: float noise in timestamps, not a real offset


@dataclass(frozen=True)
class WindowSpec:
    """How a machine's signals become feature rows (all in seconds).

    The windows and the step are whole numbers of periods: features are computed on the grid.
    The short window is the end of the long one and holds at least two periods (a spread).
    """

    period_s: float = 1.0
    window_s: float = 30.0
    step_s: float = 1.0
    short_s: float = 2.0

    def __post_init__(self) -> None:
        if not (self.period_s > 0 and self.window_s > 0 and self.step_s > 0):
            raise ValueError(f"period, window and step must be positive seconds: {self}")
        for name in ("window_s", "step_s", "short_s"):
            periods = getattr(self, name) / self.period_s
            if periods < 1 - _GRID_TOLERANCE or abs(periods - round(periods)) > _GRID_TOLERANCE:
                raise ValueError(
                    f"{name} {getattr(self, name):g} s must be a whole number of periods "
                    f"({self.period_s:g} s)"
                )
        if not 2 <= self.short_width <= self.width:
            raise ValueError(
                f"the short window ({self.short_s:g} s) must hold two periods and fit in the "
                f"window ({self.window_s:g} s)"
            )

    @property
    def width(self) -> int:
        """Samples per window."""
        return round(self.window_s / self.period_s)

    @property
    def short_width(self) -> int:
        """Samples per short window."""
        return round(self.short_s / self.period_s)

    @property
    def stride(self) -> int:
        """Samples between two feature rows."""
        return round(self.step_s / self.period_s)


@dataclass(frozen=True)
class Frame:
    """One machine's signals on a regular time grid: `values[i, j]` is signal j at `times[i]`,
    NaN where unknown."""

    times: np.ndarray
    signals: tuple[str, ...]
    values: np.ndarray


def frame_from_samples(
    times_s: np.ndarray, signals: np.ndarray, values: np.ndarray, spec: WindowSpec
) -> Frame:
    """Irregular (time, signal, value) samples onto the spec's grid, holding the last value.

    Holding is right for OPC UA subscriptions, which report only changes. The grid sits on
    multiples of `period_s`, so frames read at different moments line up. A signal is NaN
    before its first sample and wherever its last sample was NaN or infinite (a gap).
    """
    times_s = np.asarray(times_s, dtype=float)
    signals = np.asarray(signals, dtype=object)
    values = np.asarray(values, dtype=float)
    values = np.where(np.isfinite(values), values, np.nan)
    names = tuple(sorted(set(signals.tolist())))
    if times_s.size == 0:
        return Frame(np.empty(0), names, np.empty((0, len(names))))
    first = math.ceil(times_s.min() / spec.period_s - _GRID_TOLERANCE)
    last = math.floor(times_s.max() / spec.period_s + _GRID_TOLERANCE)
    grid = np.arange(first, last + 1) * spec.period_s
    order = np.argsort(times_s, kind="stable")  # equal times: the later sample wins
    times_s, signals, values = times_s[order], signals[order], values[order]
    columns = np.full((grid.size, len(names)), np.nan)
    slack = _GRID_TOLERANCE * spec.period_s
    for j, name in enumerate(names):
        mine = signals == name
        held = np.searchsorted(times_s[mine], grid + slack, side="right") - 1
        known = held >= 0
        columns[known, j] = values[mine][held[known]]
    return Frame(grid, names, columns)


def feature_names(signals: Sequence[str]) -> list[str]:
    """Column names of `window_features`: "signal:kind", grouped by signal."""
    return [f"{signal}:{kind}" for signal in signals for kind in FEATURE_KINDS]


def feature_signal(name: str) -> str:
    """The signal a feature column belongs to: "current_a:level" -> "current_a"."""
    return name.rpartition(":")[0] or name


def window_features(
    frame: Frame, spec: WindowSpec, *, warnings: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Feature rows of the frame's sliding windows: (row times, X (M, 5*S), feature names).

    A row is stamped with the time of its window's last sample (what is known then). Rows sit
    on multiples of `step_s` where the grid allows, so a batch and an online scorer that reads
    the latest window produce the same rows. Windows with a NaN in any signal are dropped; how
    many and in which signals is appended to `warnings`.
    """
    names = feature_names(frame.signals)
    width, stride = spec.width, spec.stride
    _check_period(frame, spec)
    if len(frame.times) < width:
        if warnings is not None and len(frame.times):
            warnings.append(
                f"{len(frame.times)} samples are fewer than one window ({width}); no rows"
            )
        return np.empty(0), np.empty((0, len(names))), names
    first = _first_end(frame.times, width, stride, spec.step_s)
    ends = np.arange(first, len(frame.times), stride)
    windows = sliding_window_view(frame.values, width, axis=0)[ends - width + 1]  # (M, S, W)
    gaps = np.isnan(windows).any(axis=2)  # (M, S)
    keep = ~gaps.any(axis=1)
    if warnings is not None and not keep.all():
        warnings.append(_gap_note(gaps, frame.signals))
    windows = windows[keep]
    recent = windows[:, :, -spec.short_width :]
    offsets = (np.arange(width) - (width - 1) / 2) * spec.period_s
    slope = windows @ offsets / max(float(offsets @ offsets), np.finfo(float).tiny)
    kinds = (
        windows.mean(axis=2),
        _log_spread(windows),
        slope,
        recent.mean(axis=2),
        _log_spread(recent),
    )
    features = np.stack(kinds, axis=2).reshape(len(windows), -1)
    return frame.times[ends[keep]], features, names


def _log_spread(windows: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(windows.std(axis=2), SPREAD_FLOOR))


def _check_period(frame: Frame, spec: WindowSpec) -> None:
    if len(frame.times) < 2:
        return
    period = float(frame.times[1] - frame.times[0])
    if abs(period - spec.period_s) > _GRID_TOLERANCE * spec.period_s:
        raise ValueError(
            f"the frame's period is {period:g} s but the window spec says {spec.period_s:g} s"
        )


def _first_end(times: np.ndarray, width: int, stride: int, step_s: float) -> int:
    """Index of the first window end that falls on a multiple of step_s (else the first end)."""
    candidates = times[width - 1 : width - 1 + stride] / step_s
    on_step = np.flatnonzero(np.abs(candidates - np.round(candidates)) < _GRID_TOLERANCE)
    return width - 1 + (int(on_step[0]) if on_step.size else 0)


def _gap_note(gaps: np.ndarray, signals: Sequence[str]) -> str:
    per_signal = gaps.sum(axis=0)
    where = ", ".join(f"{s} ({n})" for s, n in zip(signals, per_signal, strict=True) if n)
    dropped = int(gaps.any(axis=1).sum())
    return f"dropped {dropped} of {len(gaps)} windows with gaps (NaN) in: {where}"
