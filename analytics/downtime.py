"""Downtime: every stop of a machine with its reason, micro-stops, and a Pareto of reasons.

A stop is a stretch of a machine's `state` at idle or faulted (core.schema.MachineState): the
machine should be making product and is not. Stopped (switched off) is outside the plan, so it
ends a stop without being one; unknown rows (gaps) neither open nor end one. The reason is the
first non-zero code the machine's `reason_code` signal showed during the stop (core.reasons),
named from the standard table or the plant's own codes for that machine (`load_reasons`).

`StopTracker` follows the stops of one machine row by row and makes the `events` points of
kind `stop`: opened (active true), closed (active false, with reason, category, duration_s and
micro_stop). A row without a state (a change-only tag that did not change in the rows read)
changes nothing. `DowntimeFollower` runs the trackers of every machine in each cycle of the
online detector (analytics.online), on the telemetry the detector read anyway (no read of its
own), and at start takes up the stops its predecessor left open (from their opening events), so
a restart neither loses nor splits a stop.

Read back (`stops`), a stop whose PLC gave no reason takes the verdict of an operator's label
(analytics.labels, id `stop:MACHINE@START`): planned or fault, named after the label's note;
a stop labelled a false alarm is left out. `pareto` ranks the reasons by lost time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from analytics.features import WindowSpec
from analytics.labels import reviewed_id
from analytics.windows import READ_TIMEOUT_S, MachineTelemetry
from core.reasons import (
    MICRO_STOP_S,
    REASON_SIGNAL,
    STANDARD_REASONS,
    UNASSIGNED,
    Category,
    Reason,
    reason_of,
)
from core.sample import Point
from core.schema import (
    EVENTS,
    STATE_SIGNAL,
    EventKind,
    MachineState,
    Verdict,
)
from core.storage import Historian

STANDING = (float(MachineState.IDLE), float(MachineState.FAULTED))
Reasons = Mapping[int, Reason]
GRID = WindowSpec(period_s=1.0)  # stops are timed to the second
LAG_S = 3.0  # follow rows this much behind the detector's time: late samples are in by then
RESUME_S = 7 * 86_400.0  # at start, take up a stop opened up to a week ago


class ReasonsError(ValueError):
    """A reasons file that cannot be used; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Stop:
    """One stop of one machine; `end` None while it lasts."""

    machine: str
    start: float
    end: float | None
    reason: Reason
    tags: dict[str, str]

    @property
    def id(self) -> str:
        return reviewed_id(EventKind.STOP.value, self.machine, self.start)

    @property
    def duration_s(self) -> float:
        return 0.0 if self.end is None else self.end - self.start

    def micro(self, micro_stop_s: float = MICRO_STOP_S) -> bool:
        return self.end is not None and self.duration_s < micro_stop_s


class StopTracker:
    """The stops of one machine, fed its rows in time order (see the module docstring)."""

    def __init__(
        self,
        machine: str,
        tags: Mapping[str, str],
        reasons: Reasons = STANDARD_REASONS,
        micro_stop_s: float = MICRO_STOP_S,
    ) -> None:
        self.machine, self.tags = machine, dict(tags)
        self.reasons, self.micro_stop_s = reasons, micro_stop_s
        self.current: Stop | None = None
        self.last_row_s = -np.inf

    def resume(self, stop: Stop) -> None:
        """Take up a stop still open in the historian (the tracker before a restart opened it)."""
        self.current = stop

    def feed(self, times: np.ndarray, state: np.ndarray, codes: np.ndarray | None) -> list[Point]:
        """The stop events the rows make (rows at or before the last fed are skipped)."""
        points = []
        for i in np.flatnonzero(times > self.last_row_s):
            t, s = float(times[i]), float(state[i])
            code = None if codes is None else float(codes[i])
            if np.isnan(s):
                if self.current is not None:  # still standing: the reason may come now
                    self._name_reason(code)
                continue
            if s in STANDING:
                points += self._standing(t, code)
            elif self.current is not None:
                points.append(self._close(t))
        if len(times):
            self.last_row_s = max(self.last_row_s, float(times[-1]))
        return points

    def _standing(self, t: float, code: float | None) -> list[Point]:
        if self.current is None:
            reason = reason_of(code, self.reasons) if _named(code) else UNASSIGNED
            self.current = Stop(self.machine, t, None, reason, self.tags)
            return [stop_event(self.current, self.micro_stop_s)]
        self._name_reason(code)
        return []

    def _name_reason(self, code: float | None) -> None:
        """The PLC named the reason after the machine stood: the stop takes it."""
        assert self.current is not None
        if _named(code) and self.current.reason is UNASSIGNED:
            self.current = replace(self.current, reason=reason_of(code, self.reasons))

    def _close(self, t: float) -> Point:
        assert self.current is not None
        closed, self.current = replace(self.current, end=t), None
        return stop_event(closed, self.micro_stop_s)


def _named(code: float | None) -> bool:
    """A reading of a reason code that names a reason (0 is none, NaN no reading)."""
    return code is not None and not np.isnan(code) and code != 0


class DowntimeFollower:
    """The stops of every machine, followed cycle by cycle from the historian."""

    def __init__(
        self,
        historian: Historian,
        reasons: Mapping[str, Reasons],
        micro_stop_s: float = MICRO_STOP_S,
        lag_s: float = LAG_S,
    ) -> None:
        self.historian, self.reasons = historian, reasons
        self.micro_stop_s, self.lag_s = micro_stop_s, lag_s
        self._trackers: dict[str, StopTracker] = {}
        self._fed_until: float | None = None  # None until the open stops are taken up

    async def step(self, now_s: float, found: Mapping[str, MachineTelemetry]) -> list[Point]:
        """The stop events of the rows since the last cycle, from the telemetry the detector
        read this cycle (`found`, which overlaps the last read); none on the first cycle: it
        starts there, with the stops left open before."""
        until = now_s - self.lag_s
        if self._fed_until is None:
            await self._resume(until)
            self._fed_until = until
            return []
        if until <= self._fed_until:
            return []
        points = []
        for name, telemetry in found.items():
            frame = telemetry.frame(GRID)
            state, codes = frame_columns(frame.signals, frame.values)
            if state is None:
                continue
            rows = frame.times <= until
            feed = self._tracker(name, telemetry.tags).feed
            points += feed(frame.times[rows], state[rows], None if codes is None else codes[rows])
        self._fed_until = until
        return points

    async def _resume(self, now_s: float) -> None:
        async with asyncio.timeout(READ_TIMEOUT_S):
            events = await self.historian.points(
                EVENTS.name,
                tags={"kind": EventKind.STOP.value},
                start_ns=round((now_s - RESUME_S) * 1e9),
            )
        for stop in stops(events):
            if stop.end is None:
                tracker = self._tracker(stop.machine, stop.tags)
                tracker.resume(stop)
                tracker.last_row_s = now_s

    def _tracker(self, name: str, tags: Mapping[str, str]) -> StopTracker:
        """The machine's tracker; a new one follows rows from the last cycle on."""
        if name not in self._trackers:
            reasons = self.reasons.get(name, STANDARD_REASONS)
            tracker = StopTracker(name, tags, reasons, self.micro_stop_s)
            tracker.last_row_s = self._fed_until if self._fed_until is not None else -np.inf
            self._trackers[name] = tracker
        return self._trackers[name]


def stop_event(stop: Stop, micro_stop_s: float = MICRO_STOP_S) -> Point:
    """A stop's opening event (end None) or closing one, with what the dashboards select."""
    reason = stop.reason
    fields: dict[str, float | bool | str] = {
        "active": stop.end is None,
        "reason": reason.name,
        "category": reason.category.value,
    }
    if stop.end is None:
        text = f"{stop.machine} stopped: {reason.name} ({reason.category.value})"
        ts = stop.start
    else:
        fields["duration_s"] = stop.duration_s
        fields["micro_stop"] = stop.micro(micro_stop_s)
        kind = "micro-stop" if fields["micro_stop"] else "stop"
        text = f"{stop.machine} {kind} of {stop.duration_s:.0f} s: {reason.name}"
        ts = stop.end
    tags = {**stop.tags, "machine": stop.machine, "kind": EventKind.STOP.value}
    return Point(EVENTS.name, tags, {"text": text, **fields}, round(ts * 1e9))


def frame_columns(
    signals: Sequence[str], values: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(state column, reason-code column) of a frame's values, each None if the signal is absent."""
    state = values[:, signals.index(STATE_SIGNAL)] if STATE_SIGNAL in signals else None
    codes = values[:, signals.index(REASON_SIGNAL)] if REASON_SIGNAL in signals else None
    return state, codes


def stops(events: Sequence[Point]) -> list[Stop]:
    """The stops recorded in `events` (time order), open ones included, with operators' labels
    applied to those their PLC gave no reason for; a stop labelled a false alarm is left out."""
    found: dict[str, Stop] = {}
    open_by_machine: dict[str, str] = {}
    labels: dict[str, Point] = {}
    for point in events:
        kind, machine = point.tags.get("kind"), point.tags.get("machine", "")
        if kind == EventKind.LABEL:
            labels[str(point.fields.get("episode", ""))] = point  # the newest label wins
        elif kind == EventKind.STOP:
            _follow(found, open_by_machine, point, machine)
    result = []
    for stop in found.values():
        label = labels.get(stop.id)
        if label is not None and stop.reason == UNASSIGNED:
            if label.fields.get("label") == Verdict.FALSE_ALARM:
                continue
            stop = replace(stop, reason=_labelled_reason(label))
        result.append(stop)
    return sorted(result, key=lambda s: s.start)


def _follow(
    found: dict[str, Stop], open_by_machine: dict[str, str], point: Point, machine: str
) -> None:
    fields = point.fields
    name = str(fields.get("reason", UNASSIGNED.name))
    # stored by name: the code stays with the PLC's table
    reason = UNASSIGNED if name == UNASSIGNED.name else Reason(-1, name, _category(fields))
    tags = {k: v for k, v in point.tags.items() if k != "kind"}
    if fields.get("active"):
        stop = Stop(machine, point.ts / 1e9, None, reason, tags)
        found[stop.id] = stop
        open_by_machine[machine] = stop.id
        return
    key = open_by_machine.pop(machine, None)
    duration = float(fields.get("duration_s", 0.0))
    end = point.ts / 1e9
    start = found[key].start if key is not None else end - duration
    stop = Stop(machine, start, end, reason, tags)
    found[stop.id] = stop


def _category(fields: Mapping[str, object]) -> Category:
    try:
        return Category(str(fields.get("category", Category.UNPLANNED.value)))
    except ValueError:
        return Category.UNPLANNED


def _labelled_reason(label: Point) -> Reason:
    verdict = str(label.fields.get("label"))
    category = Category.PLANNED if verdict == Verdict.PLANNED else Category.UNPLANNED
    name = str(label.fields.get("note") or verdict)
    return Reason(UNASSIGNED.code, name, category)


@dataclass(frozen=True)
class ReasonTotal:
    """One bar of the Pareto: a reason's closed stops, micro-stops among them, and lost time."""

    reason: str
    category: Category
    stops: int
    micro_stops: int
    lost_s: float
    share: float  # of all lost time ranked


def pareto(found: Sequence[Stop], micro_stop_s: float = MICRO_STOP_S) -> list[ReasonTotal]:
    """Closed stops grouped by reason, most lost time first (ties: more stops first, then name)."""
    groups: dict[tuple[str, Category], list[Stop]] = {}
    for stop in found:
        if stop.end is not None:
            groups.setdefault((stop.reason.name, stop.reason.category), []).append(stop)
    total = sum(s.duration_s for group in groups.values() for s in group) or 1.0
    rows = [
        ReasonTotal(
            name,
            category,
            len(group),
            sum(s.micro(micro_stop_s) for s in group),
            lost := sum(s.duration_s for s in group),
            lost / total,
        )
        for (name, category), group in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r.lost_s, -r.stops, r.reason))


def load_reasons(path: Path) -> dict[str, dict[int, Reason]]:
    """A plant's reason codes per machine, each over the standard table:

    filler:
      7: {name: no_caps, category: unplanned}
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReasonsError(f"{path}: cannot read the reasons file: {exc}") from None
    if not isinstance(doc, dict):
        raise ReasonsError(f"{path}: expected machine names, each with codes; see docs/oee.md")
    return {str(m): {**STANDARD_REASONS, **_codes(path, str(m), c)} for m, c in doc.items()}


def _codes(path: Path, machine: str, entries: object) -> dict[int, Reason]:
    if not isinstance(entries, dict):
        raise ReasonsError(f"{path}: {machine}: expected codes, e.g. `7: {{name: no_caps}}`")
    table = {}
    for code, entry in entries.items():
        where = f"{path}: {machine}.{code}"
        if not isinstance(code, int) or isinstance(code, bool) or code <= 0:
            raise ReasonsError(f"{where}: a code is a whole number above 0 (0 means no reason)")
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ReasonsError(f"{where}: needs `name:` (e.g. no_caps)")
        category = entry.get("category", Category.UNPLANNED.value)
        if category not in {c.value for c in Category}:
            raise ReasonsError(f"{where}: category is planned or unplanned, not {category!r}")
        extra = entry.keys() - {"name", "category"}
        if extra:
            raise ReasonsError(f"{where}: unknown key {', '.join(sorted(extra))}; remove it")
        table[code] = Reason(code, entry["name"], Category(category))
    return table
