"""A picture of one machine: its signals, the anomaly severity (the score as a multiple of its
threshold, core.severity), the episodes the detector flagged and the faults that really
happened, for anyone who would rather look.

Drawn on a bare matplotlib Figure (Agg canvas, no pyplot): no display, no global backend switch
and no figure registry to leak from in a long-running process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analytics.episodes import Episode, ScoreTrace
from analytics.features import Frame
from core.severity import LEVEL_FLOORS, SEVERITY_CAP, anomaly_severity

EPISODE_COLOUR = "tab:red"
FAULT_COLOUR = "tab:blue"
EPOCH_FROM_S = 1e8  # times above this are Unix epoch seconds (dates); below, seconds of a run

LEGEND_IN = 0.55  # inches at the top for the title and the legend

TimeAxis = Callable[[Any], Any]  # seconds -> what matplotlib puts on the x axis


class FaultSpan(Protocol):
    """A true fault interval (ground truth); any object with these attributes will do."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def fault(self) -> str: ...


def render_report(
    frame: Frame,
    scores: ScoreTrace,
    threshold: float,
    episodes: Sequence[Episode],
    fault_intervals: Sequence[FaultSpan],
    path: Path,
    *,
    title: str = "",
    max_signals: int = 6,
) -> Path:
    """Write the PNG for one machine and return its path.

    The signals that drove flagged episodes come first, then the others, up to `max_signals`
    panels; every panel shades episodes and true faults so cause and effect line up.
    """
    signals = _panel_signals(frame, episodes, max_signals)
    fig = Figure(figsize=(12, 1.7 * len(signals) + 2.6))
    axes = fig.subplots(
        len(signals) + 1,
        1,
        sharex=True,
        height_ratios=[1.0] * len(signals) + [1.4],
        squeeze=False,
    )
    column = axes[:, 0]
    as_x = _time_axis(frame.times, scores.times)
    for ax, signal in zip(column, signals, strict=False):
        ax.plot(as_x(frame.times), frame.values[:, frame.signals.index(signal)], lw=0.9)
        ax.set_ylabel(signal, rotation=0, ha="right", va="center", fontsize=9)
    score_ax = column[-1]
    _plot_severity(score_ax, as_x, scores, threshold)
    for ax in column:
        _shade(ax, as_x, episodes, fault_intervals)
        ax.grid(alpha=0.3)
    handles, _ = score_ax.get_legend_handles_labels()
    handles += [
        Patch(color=EPISODE_COLOUR, alpha=0.2, label="flagged episode"),
        Patch(color=FAULT_COLOUR, alpha=0.2, label="true fault"),
    ]
    _label_faults(column[0], as_x, fault_intervals)
    score_ax.set_xlabel("time (UTC)" if _is_epoch(frame.times) else "time (s)")
    fig.suptitle(title or "anomaly report", fontsize=11)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.965), ncols=4)
    fig.align_ylabels(column)
    fig.tight_layout(rect=(0, 0, 1, 1 - LEGEND_IN / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _plot_severity(ax: Axes, as_x: TimeAxis, scores: ScoreTrace, threshold: float) -> None:
    """The severity on its bounded scale, the threshold at 1 and the levels above it: a
    developed fault reads "10x or more" instead of pushing the onset flat onto the floor."""
    severity = [anomaly_severity(float(v), threshold) for v in scores.values]
    ax.plot(as_x(scores.times), severity, color="black", lw=0.9, label="severity")
    ax.axhline(1.0, color=EPISODE_COLOUR, ls="--", lw=1.0, label="threshold (1)")
    for level, floor in LEVEL_FLOORS.items():
        if floor > 1.0:
            ax.axhline(floor, color="grey", ls=":", lw=0.8)
            ax.annotate(
                level.name.lower(),
                (1.0, floor),
                xycoords=("axes fraction", "data"),
                xytext=(2, 0),
                textcoords="offset points",
                fontsize=7,
                va="center",
            )
    ax.set_ylim(0.0, SEVERITY_CAP * 1.05)
    ax.set_ylabel("severity", rotation=0, ha="right", va="center", fontsize=9)


def _panel_signals(frame: Frame, episodes: Sequence[Episode], limit: int) -> list[str]:
    """Top signals of the episodes (most flagged first), then the rest in frame order."""
    flagged = [e.top_signal for e in sorted(episodes, key=lambda e: -e.peak_score)]
    ordered = dict.fromkeys(s for s in flagged if s in frame.signals)
    ordered.update(dict.fromkeys(frame.signals))
    return list(ordered)[: max(1, limit)]


def _is_epoch(times: np.ndarray) -> bool:
    return len(times) > 0 and float(np.nanmin(times)) > EPOCH_FROM_S


def _time_axis(*series: np.ndarray) -> TimeAxis:
    """A converter from seconds to x values: dates for epoch times, seconds otherwise."""
    if any(_is_epoch(times) for times in series):
        return lambda t: [datetime.fromtimestamp(float(s), UTC) for s in np.atleast_1d(t)]
    return lambda t: np.asarray(t, dtype=float)


def _shade(
    ax: Axes, as_x: TimeAxis, episodes: Sequence[Episode], faults: Sequence[FaultSpan]
) -> None:
    for fault in faults:
        start, end = as_x([fault.start, fault.end])
        ax.axvspan(start, end, color=FAULT_COLOUR, alpha=0.15, lw=0)
    for episode in episodes:
        start, end = as_x([episode.start, episode.end])
        ax.axvspan(start, end, color=EPISODE_COLOUR, alpha=0.2, lw=0)
    if isinstance(ax.xaxis.get_major_formatter(), mdates.AutoDateFormatter):
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _label_faults(ax: Axes, as_x: TimeAxis, faults: Sequence[FaultSpan]) -> None:
    """Name each true fault above the top panel, where it cannot hide a curve."""
    for fault in faults:
        (start,) = as_x([fault.start])
        ax.annotate(
            fault.fault,
            (start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=8,
            color=FAULT_COLOUR,
            va="bottom",
        )
