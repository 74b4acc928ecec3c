"""OEE (availability x performance x quality) per machine, from its `state` and counter signals.

What is computed for which machine, from the signals it has:

- `state` only (e.g. pasteurizer, conveyor, air compressor, energy meter): **availability** only.
  Planned time is every known sample that is not stopped (state 0); run time is running (2), so
  idle (1, starved or unloaded) and faulted (3) count as lost time. That loss is split by the
  category of the machine's `reason_code` at each lost second (core.reasons): **planned_loss**
  (cleaning, changeover, ...) and **unplanned_loss** (the rest, a missing reason included), so
  availability + planned_loss + unplanned_loss = 1.
- `state` and an output counter (a `*_total` signal without "reject" in its name, e.g. the
  capper's `caps_applied_total`): also **performance** = counted output / (ideal rate x run
  time), and **quality** 1.0 (no reject counter, so nothing is known to be rejected).
- `state`, an output counter and a reject counter (`*_total` with "reject", e.g. the filler's
  `bottles_rejected_total`, which counts inside its output): **quality** = (output - rejects) /
  output as well.
- no `state`: nothing (no KPI point).

The ideal rate is a parameter per machine (units per minute) when the plant knows it, else the
observed nominal rate: the 95th percentile of the output rate over one-minute stretches of
uninterrupted running. Performance is not clipped: above 1.0 says the ideal rate is set too low.
A counter that goes down (a PLC restart) adds nothing for that step; gaps add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from analytics.features import Frame
from core.reasons import REASON_SIGNAL, STANDARD_REASONS, Category, Reason
from core.sample import Point
from core.schema import KPI, MachineState

STOPPED, RUNNING = float(MachineState.STOPPED), float(MachineState.RUNNING)
NOMINAL_STRETCH_S = 60.0
NOMINAL_PERCENTILE = 95.0


@dataclass(frozen=True)
class Oee:
    """The OEE factors of one machine over [start, end); None where its signals cannot say."""

    machine: str
    start: float
    end: float
    availability: float
    performance: float | None = None
    quality: float | None = None
    planned_loss: float = 0.0  # share of planned time lost to planned stops (core.reasons)
    unplanned_loss: float = 0.0  # the rest of 1 - availability

    @property
    def oee(self) -> float | None:
        if self.performance is None or self.quality is None:
            return None
        return self.availability * self.performance * self.quality

    def fields(self) -> dict[str, float]:
        """The `kpi` fields this machine's signals support (the others are left out)."""
        values = {
            "availability": self.availability,
            "performance": self.performance,
            "quality": self.quality,
            "oee": self.oee,
            "planned_loss": self.planned_loss,
            "unplanned_loss": self.unplanned_loss,
        }
        return {k: v for k, v in values.items() if v is not None}


def output_counters(signals: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(output counter, reject counter) among a machine's signals, each None if absent."""
    totals = sorted(s for s in signals if s.endswith("_total"))
    rejects = [s for s in totals if "reject" in s]
    outputs = [s for s in totals if "reject" not in s]
    return (outputs[0] if outputs else None), (rejects[0] if rejects else None)


def observed_rate_per_s(frame: Frame, counter: str) -> float | None:
    """The observed nominal output rate (units/s), or None without a minute of running."""
    state = _column(frame, "state")
    count = _column(frame, counter)
    period = _period(frame)
    width = max(1, round(NOMINAL_STRETCH_S / period))
    if state is None or count is None or len(count) <= width:
        return None
    running = np.nan_to_num(state, nan=-1.0) == RUNNING
    # a stretch [i, i + width] counts only if running throughout and its counter did not reset
    run_all = np.convolve(running.astype(float), np.ones(width + 1), "valid") == width + 1
    rise = count[width:] - count[:-width]
    usable = run_all & np.isfinite(rise) & (rise >= 0)
    if not usable.any():
        return None
    return float(np.percentile(rise[usable], NOMINAL_PERCENTILE)) / (width * period)


def machine_oee(
    machine: str,
    frame: Frame,
    start: float,
    end: float,
    ideal_rate_per_s: float | None = None,
    reasons: Mapping[int, Reason] = STANDARD_REASONS,
) -> Oee | None:
    """OEE over the rows of `frame` in [start, end); None without state or planned time."""
    state = _column(frame, "state")
    if state is None:
        return None
    rows = (frame.times >= start) & (frame.times < end)
    period = _period(frame)
    known = rows & np.isfinite(state)
    planned_s = np.count_nonzero(known & (state != STOPPED)) * period
    run_s = np.count_nonzero(known & (state == RUNNING)) * period
    if planned_s <= 0:
        return None
    lost = known & (state != STOPPED) & (state != RUNNING)
    planned_loss = float(
        np.count_nonzero(lost & _planned_rows(frame, reasons)) * period / planned_s
    )
    oee = Oee(
        machine,
        start,
        end,
        availability=float(run_s / planned_s),
        planned_loss=planned_loss,
        unplanned_loss=float(1.0 - run_s / planned_s - planned_loss),
    )
    output, reject = output_counters(frame.signals)
    if output is None:
        return oee
    produced = _counted(frame, output, rows)
    ideal = ideal_rate_per_s if ideal_rate_per_s is not None else observed_rate_per_s(frame, output)
    performance = produced / (ideal * run_s) if ideal and run_s > 0 else None
    quality = 1.0 if reject is None else None
    if reject is not None and produced > 0:
        quality = max(0.0, produced - _counted(frame, reject, rows)) / produced
    return replace(oee, performance=performance, quality=quality)


def _planned_rows(frame: Frame, reasons: Mapping[int, Reason]) -> np.ndarray:
    """Rows whose reason code is a planned one; without a reason signal, none."""
    codes = _column(frame, REASON_SIGNAL)
    if codes is None:
        return np.zeros(len(frame.times), dtype=bool)
    planned = [code for code, r in reasons.items() if r.category is Category.PLANNED]
    return np.isin(codes, planned)


def oee_by_interval(
    machine: str,
    frame: Frame,
    interval_s: float,
    ideal_rate_per_min: float | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    reasons: Mapping[int, Reason] = STANDARD_REASONS,
) -> list[Oee]:
    """OEE for each whole interval (aligned to multiples of `interval_s`) the frame covers, or
    of [since, until) where the caller knows what was read: the frame may start earlier, so
    that a state that only changes now and then (OPC UA reports changes) is known when the
    interval starts, and its last row may fall short of `until` by up to a period."""
    if len(frame.times) == 0:
        return []
    ideal = ideal_rate_per_min / 60.0 if ideal_rate_per_min is not None else None
    begin = frame.times[0] if since is None else max(since, frame.times[0])
    end = frame.times[-1] + _period(frame) if until is None else until
    first = np.ceil(begin / interval_s) * interval_s
    last = np.floor(end / interval_s) * interval_s
    found = []
    for start in np.arange(first, last, interval_s):
        oee = machine_oee(machine, frame, float(start), float(start + interval_s), ideal, reasons)
        if oee is not None:
            found.append(oee)
    return found


def kpi_point(oee: Oee, tags: Mapping[str, str]) -> Point:
    """The `kpi` point of one interval, stamped at its end (when the figure became known)."""
    return Point(KPI.name, {**tags, "machine": oee.machine}, oee.fields(), int(oee.end * 1e9))


def _column(frame: Frame, signal: str) -> np.ndarray | None:
    if signal not in frame.signals:
        return None
    return frame.values[:, frame.signals.index(signal)]


def _period(frame: Frame) -> float:
    if len(frame.times) < 2:
        return 1.0
    return float(np.median(np.diff(frame.times)))


def _counted(frame: Frame, counter: str, rows: np.ndarray) -> float:
    """Units a counter added over the rows (the step into the first row included); resets and
    gaps add nothing."""
    count = _column(frame, counter)
    assert count is not None
    rises = np.diff(count, prepend=np.nan)
    rises = np.where(np.isfinite(rises) & (rises > 0), rises, 0.0)
    return float(rises[rows].sum())
