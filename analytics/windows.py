"""A machine's telemetry for a time range, read from any historian into analytics' Frame.

Machines and signals are discovered from the data (the historian knows what the connectors
wrote; analytics needs no line file). A bad-quality sample is a gap, not a value: it carries no
trustworthy number, so it becomes NaN, and the feature windows that touch it are dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from analytics.features import Frame, WindowSpec, frame_from_samples
from core.reasons import REASON_SIGNAL
from core.sample import Point, Quality
from core.schema import STATE_SIGNAL, TELEMETRY
from core.storage import Historian

READ_TIMEOUT_S = 60.0
MIN_LEVELS = 3  # fewer distinct values: a flag, command or state, not a measurement


@dataclass
class MachineTelemetry:
    """The raw samples of one machine, in time order, as the historian returned them."""

    site: str
    line: str
    machine: str
    times_s: list[float] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def tags(self) -> dict[str, str]:
        """The tags that place this machine (site, line, machine) on other measurements."""
        return {"site": self.site, "line": self.line, "machine": self.machine}

    def signal_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.signals)))

    def frame(self, spec: WindowSpec, signals: Sequence[str] | None = None) -> Frame:
        """The samples on the spec's regular grid; `signals` fixes the columns and their order
        (a signal without samples is all NaN)."""
        grid = frame_from_samples(
            np.asarray(self.times_s, dtype=float),
            np.asarray(self.signals, dtype=object),
            np.asarray(self.values, dtype=float),
            spec,
        )
        return select_signals(grid, signals if signals is not None else self.signal_names())


async def read_telemetry(
    historian: Historian,
    start_s: float,
    end_s: float,
    *,
    machine: str | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> dict[str, MachineTelemetry]:
    """Samples of every machine (or one) in [start_s, end_s), keyed by machine name."""
    tags = {"machine": machine} if machine else None
    async with asyncio.timeout(timeout_s):
        points = await historian.points(
            TELEMETRY.name, tags=tags, start_ns=int(start_s * 1e9), end_ns=int(end_s * 1e9)
        )
    return group_telemetry(points)


def group_telemetry(points: Sequence[Point]) -> dict[str, MachineTelemetry]:
    """Telemetry points per machine; bad quality and missing values become NaN (gaps). A text
    with no number (a batch id, a DateTime) is no detector input and is left out."""
    machines: dict[str, MachineTelemetry] = {}
    for point in points:
        if "text" in point.fields and "value" not in point.fields:
            continue
        tags = point.tags
        name = tags.get("machine", "")
        found = machines.get(name)
        if found is None:
            found = machines[name] = MachineTelemetry(
                tags.get("site", ""), tags.get("line", ""), name
            )
        value = point.fields.get("value")
        good = point.fields.get("quality", Quality.GOOD) != Quality.BAD
        found.times_s.append(point.ts / 1e9)
        found.signals.append(tags.get("signal", ""))
        found.values.append(float(value) if good and value is not None else np.nan)
    return machines


class TelemetryBuffer:
    """The recent samples of every machine, kept current by overlapping reads.

    Online scoring reads only the last few seconds each cycle and merges them here (a sample
    read twice is stored once). A signal that stopped changing may stop arriving (OPC UA
    reports changes only; a stuck sensor is exactly that), so each signal's newest older sample
    is kept as its held value for up to `hold_s`.
    """

    def __init__(self, hold_s: float = 600.0) -> None:
        self.hold_s = hold_s
        self._samples: dict[str, dict[str, dict[int, float]]] = {}
        self._places: dict[str, tuple[str, str]] = {}

    def merge(self, machines: dict[str, MachineTelemetry]) -> None:
        for name, found in machines.items():
            self._places[name] = (found.site, found.line)
            series = self._samples.setdefault(name, {})
            for t, signal, value in zip(found.times_s, found.signals, found.values, strict=True):
                series.setdefault(signal, {})[round(t * 1e9)] = value

    def machines(self) -> list[str]:
        return sorted(self._samples)

    def window(self, machine: str, start_s: float, end_s: float) -> MachineTelemetry:
        """Samples in [start_s, end_s], each signal's held value carried to start_s."""
        site, line = self._places.get(machine, ("", ""))
        out = MachineTelemetry(site, line, machine)
        start_ns, end_ns = round(start_s * 1e9), round(end_s * 1e9)
        held_from = start_ns - round(self.hold_s * 1e9)
        for signal, series in self._samples.get(machine, {}).items():
            before = [ts for ts in series if held_from <= ts < start_ns]
            picked = sorted(ts for ts in series if start_ns <= ts <= end_ns)
            if before:
                out.times_s.append(start_s)
                out.signals.append(signal)
                out.values.append(series[max(before)])
            for ts in picked:
                out.times_s.append(ts / 1e9)
                out.signals.append(signal)
                out.values.append(series[ts])
        order = np.argsort(out.times_s, kind="stable")
        out.times_s = [out.times_s[i] for i in order]
        out.signals = [out.signals[i] for i in order]
        out.values = [out.values[i] for i in order]
        return out

    def trim(self, before_s: float) -> None:
        """Forget samples older than `before_s`, except each signal's held value."""
        cutoff = round(before_s * 1e9)
        held_from = cutoff - round(self.hold_s * 1e9)
        for series in self._samples.values():
            for signal in list(series):
                samples = series[signal]
                older = [ts for ts in samples if ts < cutoff]
                keep = max(older, default=None)
                for ts in older:
                    if ts != keep or ts < held_from:
                        del samples[ts]
                if not samples:
                    del series[signal]


def select_signals(frame: Frame, signals: Sequence[str]) -> Frame:
    """The frame with exactly these columns, in this order; absent ones are all NaN."""
    columns = np.full((len(frame.times), len(signals)), np.nan)
    for i, signal in enumerate(signals):
        if signal in frame.signals:
            columns[:, i] = frame.values[:, frame.signals.index(signal)]
    return Frame(frame.times, tuple(signals), columns)


def detection_signals(frame: Frame) -> tuple[str, ...]:
    """The measurements worth modelling: not the state or reason code, not flags or commands
    (few distinct values), not counters (never falling, `*_total`), not constants (nothing to
    learn)."""
    keep = []
    for i, signal in enumerate(frame.signals):
        column = frame.values[:, i]
        column = column[np.isfinite(column)]
        if signal in (STATE_SIGNAL, REASON_SIGNAL) or signal.endswith("_total") or column.size < 2:
            continue
        if np.unique(column).size < MIN_LEVELS:
            continue
        if np.all(np.diff(column) >= 0):
            continue
        keep.append(signal)
    return tuple(keep)
