"""Planned periods: cleaning, a changeover, maintenance, announced for a machine beforehand
(`shopfloor plan`) and stored as `events` of kind planned (start: the point's time, end: plus
duration_s). The online detector still scores the machine then, but opens no episode: what a
planned stop does to the signals is expected, not a fault."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.sample import Point
from core.schema import EVENTS, EventKind

# how far back the detector looks for plans that may still be under way: a long shutdown
PLAN_LOOKBACK_S = 14 * 86_400.0


@dataclass(frozen=True)
class PlannedPeriod:
    """One machine's planned period, [start, end)."""

    machine: str
    start: float
    end: float
    note: str = ""
    by: str = ""

    @property
    def id(self) -> str:
        """As `episodes` lists it: planned:<machine>@<start, UTC, to the second>."""
        moment = datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{EventKind.PLANNED.value}:{self.machine}@{moment}"

    def covers(self, machine: str, t: float) -> bool:
        return machine == self.machine and self.start <= t < self.end


def plan_point(period: PlannedPeriod) -> Point:
    """The event that stores a planned period."""
    when = f"{_iso(period.start)} to {_iso(period.end)}"
    text = f"planned on {period.machine} from {when}" + (f": {period.note}" if period.note else "")
    fields: dict[str, str | float] = {"text": text, "duration_s": period.end - period.start}
    fields |= {k: v for k, v in (("note", period.note), ("by", period.by)) if v}
    tags = {"machine": period.machine, "kind": EventKind.PLANNED.value}
    return Point(EVENTS.name, tags, fields, round(period.start * 1e9))


def planned_periods(events: Iterable[Point]) -> list[PlannedPeriod]:
    """The planned periods among `events`, in time order."""
    return [
        PlannedPeriod(
            machine=point.tags.get("machine", ""),
            start=point.ts / 1e9,
            end=point.ts / 1e9 + float(point.fields.get("duration_s", 0.0)),
            note=str(point.fields.get("note", "")),
            by=str(point.fields.get("by", "")),
        )
        for point in events
        if point.tags.get("kind") == EventKind.PLANNED
    ]


def is_planned(periods: Sequence[PlannedPeriod], machine: str, t: float) -> bool:
    return any(period.covers(machine, t) for period in periods)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")
