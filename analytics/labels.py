"""Episodes and incidents as an operator reviews them: read back from `events`, each with an id
that stays the same across restarts (its kind, machine and start), and the operator's latest
verdict on it (label events: fault, false alarm or planned, with who, when and a note); and what
a machine's labelled false alarms teach (FalseAlarmMemory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from analytics.episodes import segments
from core.sample import Point
from core.schema import EVENTS, EventKind, Verdict

REVIEWED = (EventKind.ANOMALY, EventKind.INCIDENT)
# how far past a labelled false alarm's range a value is still that pattern, in units of the
# signal's normal spread; and the share of an episode's rows the memory must explain to quiet
# it. Chosen on BATADAL only (bench/bench_labels.py): any margin from 0 to 3 did the same there.
MEMORY_MARGIN = 1.0
MEMORY_SHARE = 0.5


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


class FalseAlarmMemory:
    """What a machine's labelled false alarms teach, kept beside its model instead of refitting
    it: per signal that drove a labelled flag (its top signal), the range of values it took
    then, widened by `margin` times the signal's normal spread. A later flagged row driven by
    the same signal within that range is the same false alarm again; one driven by another
    signal, or by the same one gone further, is not, so a fault that looks different still
    alarms. Model-agnostic: rows are feature arrays, top signals column indices (-1: none)."""

    def __init__(self, margin: float = MEMORY_MARGIN) -> None:
        self.margin = margin

    def fit(self, X: np.ndarray, top: np.ndarray, scale: np.ndarray) -> FalseAlarmMemory:
        """Learn the labelled rows `X` (n x signals) with each row's top signal, and each
        signal's normal spread `scale` (e.g. its standard deviation in training)."""
        X, top = np.asarray(X, dtype=float), np.asarray(top, dtype=int)
        ranges = {}
        for signal in np.unique(top[top >= 0]):
            values = X[top == signal, signal]
            pad = self.margin * float(scale[signal])
            ranges[int(signal)] = (float(values.min()) - pad, float(values.max()) + pad)
        self.ranges_ = ranges
        return self

    def suppresses(self, X: np.ndarray, top: np.ndarray) -> np.ndarray:
        """Per row of `X` (with its top signal), whether it is a remembered false alarm."""
        X, top = np.asarray(X, dtype=float), np.asarray(top, dtype=int)
        mask = np.zeros(len(X), dtype=bool)
        for signal, (low, high) in self.ranges_.items():
            rows = top == signal
            mask[rows] = (X[rows, signal] >= low) & (X[rows, signal] <= high)
        return mask

    def quiet(self, flags: np.ndarray, X: np.ndarray, top: np.ndarray) -> np.ndarray:
        """`flags` (flagged rows) without the episodes that are mostly a remembered false
        alarm (at least MEMORY_SHARE of their rows): an episode is kept or dropped whole."""
        flags = np.asarray(flags, dtype=bool).copy()
        known = self.suppresses(X, top)
        for start, end in segments(flags):
            if known[start:end].mean() >= MEMORY_SHARE:
                flags[start:end] = False
        return flags
