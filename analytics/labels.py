"""Episodes and incidents as an operator reviews them: read back from `events`, each with an id
that stays the same across restarts (its kind, machine and start), and the operator's latest
verdict on it (label events: fault, false alarm or planned, with who, when and a note). What a
false alarm label teaches a model is analytics.learning's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from core.sample import Point
from core.schema import EVENTS, EventKind, Verdict

REVIEWED = (EventKind.ANOMALY, EventKind.INCIDENT)


@dataclass(frozen=True)
class Label:
    """An operator's verdict on one episode or incident."""

    verdict: Verdict
    by: str
    at: float
    note: str = ""


@dataclass(frozen=True)
class Reviewed:
    """One anomaly episode or incident, open (end None) or closed, with its labels (newest
    last; the newest is the verdict)."""

    id: str
    kind: EventKind
    machine: str
    start: float
    end: float | None
    top_signal: str
    peak_severity: float | None
    machines: str
    tags: dict[str, str]
    labels: tuple[Label, ...] = field(default=())

    @property
    def verdict(self) -> Label | None:
        return self.labels[-1] if self.labels else None


def reviewed_id(kind: str, machine: str, start_s: float) -> str:
    """The id an operator types: kind, machine and start time (to the second, UTC)."""
    moment = datetime.fromtimestamp(start_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{kind}:{machine}@{moment}"


def reviewed(events: Sequence[Point]) -> list[Reviewed]:
    """The episodes and incidents of `events` (in time order), with their labels."""
    found: dict[str, Reviewed] = {}
    open_by_series: dict[tuple[str, str], str] = {}
    labels: list[tuple[str, Label]] = []
    for point in events:
        kind, machine = point.tags.get("kind", ""), point.tags.get("machine", "")
        if kind == EventKind.LABEL:
            labels.append((str(point.fields.get("episode", "")), _label(point)))
        elif kind in REVIEWED:
            _follow(found, open_by_series, point, EventKind(kind), machine)
    for episode, label in labels:
        if episode in found:
            found[episode] = replace(found[episode], labels=(*found[episode].labels, label))
    return sorted(found.values(), key=lambda r: r.start)


def _follow(
    found: dict[str, Reviewed],
    open_by_series: dict[tuple[str, str], str],
    point: Point,
    kind: EventKind,
    machine: str,
) -> None:
    """An opening (or growing) event starts or updates its record; a closing one ends it."""
    series, fields = (kind.value, machine), point.fields
    current = open_by_series.get(series)
    if fields.get("active"):
        start = point.ts / 1e9 if current is None else found[current].start
        key = current or reviewed_id(kind.value, machine, start)
        open_by_series[series] = key
        found[key] = _record(key, kind, machine, start, None, point)
    elif current is not None:
        del open_by_series[series]
        found[current] = _record(
            current, kind, machine, found[current].start, point.ts / 1e9, point
        )


def _record(
    key: str, kind: EventKind, machine: str, start: float, end: float | None, point: Point
) -> Reviewed:
    severity = point.fields.get("peak_severity")
    return Reviewed(
        id=key,
        kind=kind,
        machine=machine,
        start=start,
        end=end,
        top_signal=str(point.fields.get("top_signal", "")),
        peak_severity=float(severity) if isinstance(severity, int | float) else None,
        machines=str(point.fields.get("machines", machine)),
        tags={k: v for k, v in point.tags.items() if k != "kind"},
    )


def _label(point: Point) -> Label:
    return Label(
        verdict=Verdict(str(point.fields.get("label"))),
        by=str(point.fields.get("by", "")),
        at=point.ts / 1e9,
        note=str(point.fields.get("note", "")),
    )


class Labelled(Protocol):
    """What an operator can label: an episode, an incident, a stop (analytics.downtime)."""

    @property
    def id(self) -> str: ...

    @property
    def tags(self) -> dict[str, str]: ...


def label_point(target: Labelled, verdict: Verdict, *, by: str, at: float, note: str) -> Point:
    """The label event of an operator's verdict on `target`, stored at the time it was given."""
    fields: dict[str, str] = {"label": verdict.value, "by": by, "episode": target.id}
    fields["text"] = f"{target.id} labelled {verdict.value} by {by}" + (f": {note}" if note else "")
    if note:
        fields["note"] = note
    tags = {**target.tags, "kind": EventKind.LABEL.value}
    return Point(EVENTS.name, tags, fields, round(at * 1e9))
