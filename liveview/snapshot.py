"""What the page shows, read through the historian's read side (`latest`, `points`) only, so the
view is the same on SQLite and on InfluxDB and shows what is stored, not what one process saw.

Every figure a person reads comes from the data model's one source: machine states from
`MachineState`, units from `core.units`, severity (never a raw score) from `core.severity`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.sample import Point, Quality
from core.schema import (
    ALARM_LOOKBACK_S,
    ANOMALY,
    CONNECTOR,
    EVENTS,
    KEEP_ALIVE_S,
    STATE_SIGNAL,
    TELEMETRY,
    EventKind,
    MachineState,
)
from core.severity import LEVEL_FLOORS, SeverityLevel, opcua_severity_level, severity_level
from core.storage import Historian, Reading
from core.units import unit_of

NS = 1_000_000_000
HISTORY_S = 3600.0  # faults and episodes of the last hour: one student session
ANOMALY_FRESH_S = 10.0  # a machine's newest anomaly point older than this is not "now"
CONNECTOR_WINDOW_S = 35.0  # the agent writes one `connector` point per input every 10 s
TREND_S = 600.0  # the trends' first load: ten minutes of one machine's signals
JOURNAL_ROWS = 10  # the newest alarm events the page lists

Json = dict[str, Any]


async def overview(historian: Historian, order: Sequence[str] = ()) -> Json:
    """Machines with state, severity and latest values; connectors; faults beside episodes.

    `order` lists the machines as they stand on the line (the line file's order), for the
    picture; machines the historian holds beyond it follow in name order."""
    now = time.time_ns()
    readings = await historian.latest(since_ns=now - int(2 * KEEP_ALIVE_S * NS))
    scores = await historian.points(ANOMALY.name, start_ns=now - int(ANOMALY_FRESH_S * NS))
    events = await historian.points(EVENTS.name, start_ns=now - int(HISTORY_S * NS))
    health = await historian.points(CONNECTOR.name, start_ns=now - int(CONNECTOR_WINDOW_S * NS))
    plc_alarms = await historian.points(
        EVENTS.name, tags={"kind": EventKind.ALARM.value}, start_ns=now - ALARM_LOOKBACK_S * NS
    )
    return {
        "now": now / NS,
        "machines": machines(readings, scores, order),
        "connectors": connectors(health),
        "ground_truth": ground_truth(
            spans(events, EventKind.FAULT), spans(events, EventKind.ANOMALY)
        ),
        "alarms": alarms(plc_alarms),
        "levels": {level.name.lower(): floor for level, floor in LEVEL_FLOORS.items()},
    }


def machines(
    readings: Sequence[Reading], scores: Sequence[Point], order: Sequence[str]
) -> list[Json]:
    """One entry per machine: state, current severity and top signal, latest values."""
    by_machine: dict[str, list[Reading]] = {}
    for reading in readings:
        by_machine.setdefault(reading.machine, []).append(reading)
    newest = {p.tags.get("machine", ""): p for p in scores}  # points come ordered by time
    names = [m for m in order if m in by_machine] + sorted(by_machine.keys() - set(order))
    return [_machine(name, by_machine[name], newest.get(name)) for name in names]


def _machine(name: str, readings: Sequence[Reading], score: Point | None) -> Json:
    state = next((r for r in readings if r.signal == STATE_SIGNAL), None)
    severity = _finite(score.fields.get("severity")) if score else None
    return {
        "name": name,
        "state": _state_name(state),
        "severity": severity,
        "level": severity_level(severity).name.lower() if severity is not None else None,
        "anomaly": bool(score and score.fields.get("is_anomaly")),
        "top_signal": score.fields.get("top_signal") if score else None,
        "signals": [_signal(r) for r in sorted(readings, key=lambda r: r.signal)],
    }


def _state_name(state: Reading | None) -> str:
    if state is None or state.quality is Quality.BAD or not math.isfinite(state.value):
        return "unknown"
    try:
        return MachineState(int(state.value)).name.lower()
    except ValueError:
        return "unknown"


def _signal(reading: Reading) -> Json:
    good = reading.quality is Quality.GOOD
    return {
        "signal": reading.signal,
        "value": _finite(reading.value),
        "unit": unit_of(reading.signal),
        "quality": reading.quality.name.lower(),
        "time": reading.ts / NS,
        "good": good,
    }


def connectors(health: Sequence[Point]) -> list[Json]:
    """The newest health of each connector, with samples/s from its last two points."""
    by_name: dict[str, list[Point]] = {}
    for point in health:
        by_name.setdefault(point.tags.get("connector", ""), []).append(point)
    return [_connector(name, points) for name, points in sorted(by_name.items())]


def _connector(name: str, points: Sequence[Point]) -> Json:
    last = points[-1].fields
    rate = None
    if len(points) >= 2:
        before, after = points[-2], points[-1]
        seconds = (after.ts - before.ts) / NS
        counted = int(after.fields.get("samples", 0)) - int(before.fields.get("samples", 0))
        rate = counted / seconds if seconds > 0 and counted >= 0 else None
    return {
        "name": name,
        "endpoint": points[-1].tags.get("endpoint", ""),
        "connected": bool(last.get("connected")),
        "samples": int(last.get("samples", 0)),
        "samples_per_s": rate,
        "errors": int(last.get("errors", 0)),
        "reconnects": int(last.get("reconnects", 0)),
        "spool_bytes": int(last.get("spool_bytes", 0)),
        "spool_dropped": int(last.get("spool_dropped", 0)),
        "time": points[-1].ts / NS,
    }


def spans(events: Iterable[Point], kind: EventKind) -> list[Json]:
    """Events of one kind paired into spans per machine: an opening (active) event and the
    closing one after it; a span without a close is still under way (`end` None)."""
    open_: dict[str, Json] = {}
    done: list[Json] = []
    for event in events:
        if event.tags.get("kind") != kind.value:
            continue
        machine = event.tags.get("machine", "")
        if event.fields.get("active"):
            if machine in open_:
                done.append(open_.pop(machine))
            open_[machine] = _span(machine, event)
        elif machine in open_:
            span = open_.pop(machine)
            span["end"] = event.ts / NS
            span["peak_severity"] = _finite(event.fields.get("peak_severity"))
            done.append(span)
    return sorted([*done, *open_.values()], key=lambda s: s["start"])


def ground_truth(faults: Sequence[Json], episodes: Sequence[Json]) -> list[Json]:
    """Each injected fault beside the first episode on its machine that opened while it was
    under way (with the delay), then the episodes no fault explains, in time order."""
    rows: list[Json] = []
    explained: set[int] = set()
    for fault in faults:
        end = fault["end"] if fault["end"] is not None else math.inf
        found = next(
            (
                i
                for i, e in enumerate(episodes)
                if i not in explained
                and e["machine"] == fault["machine"]
                and fault["start"] <= e["start"] <= end
            ),
            None,
        )
        episode = episodes[found] if found is not None else None
        if found is not None:
            explained.add(found)
        delay = episode["start"] - fault["start"] if episode else None
        rows.append({"fault": fault, "episode": episode, "delay_s": delay})
    rows += [
        {"fault": None, "episode": e, "delay_s": None}
        for i, e in enumerate(episodes)
        if i not in explained
    ]
    return sorted(rows, key=lambda r: (r["fault"] or r["episode"])["start"])


def alarms(events: Sequence[Point]) -> Json:
    """PLC alarms (events of kind `alarm`, in time order): `active`, one entry per condition
    whose newest event is active, newest raise first, `since` its newest raise (an active,
    unacknowledged event; None if that is older than the events given); `journal`, the newest
    JOURNAL_ROWS events, newest first, each a state the PLC reported."""
    newest: dict[tuple[str, ...], Point] = {}
    raised: dict[tuple[str, ...], float] = {}
    for event in events:
        key = _condition(event)
        newest[key] = event
        if event.fields.get("active") and not event.fields.get("acked"):
            raised[key] = event.ts / NS
    active = [
        {**_alarm(event), "since": raised.get(key)}
        for key, event in newest.items()
        if event.fields.get("active")
    ]
    active.sort(key=lambda a: a["since"] or 0.0, reverse=True)
    journal = [_alarm(event) for event in reversed(events[-JOURNAL_ROWS:])]
    return {"active": active, "journal": journal}


def _condition(event: Point) -> tuple[str, ...]:
    """An alarm's identity: its condition id, and (for a server without ids) where and what."""
    fields = event.fields
    names = ("source", "condition", "condition_id")
    return (event.tags.get("machine", ""), *(str(fields.get(n, "")) for n in names))


def _alarm(event: Point) -> Json:
    fields = event.fields
    return {
        "time": event.ts / NS,
        "machine": event.tags.get("machine", ""),
        "source": str(fields.get("source", "")),
        "condition": str(fields.get("condition", "")),
        "message": str(fields.get("text", "")),
        "level": _alarm_level(fields).name.lower(),
        "active": bool(fields.get("active")),
        "acked": bool(fields.get("acked")),
        "confirmed": bool(fields.get("confirmed")),
        "comment": str(fields.get("comment", "")),
    }


def _alarm_level(fields: Mapping[str, object]) -> SeverityLevel:
    """The level the connector stored; from the PLC's severity for an event without one."""
    stored = fields.get("severity_level")
    if isinstance(stored, int) and stored in {level.value for level in SeverityLevel}:
        return SeverityLevel(stored)
    severity = fields.get("alarm_severity")
    return opcua_severity_level(severity if isinstance(severity, int) else 0)


def _span(machine: str, event: Point) -> Json:
    return {
        "machine": machine,
        "text": event.fields.get("text", ""),
        "top_signal": event.fields.get("top_signal"),
        "peak_severity": _finite(event.fields.get("peak_severity")),
        "start": event.ts / NS,
        "end": None,
    }


async def trend(historian: Historian, machine: str, after_ns: int | None) -> Json:
    """One machine's signals after `after_ns` (else of the last TREND_S): per signal its unit
    and its (time, value) columns, as the charts take them; bad samples are gaps (null).
    `until` is the newest timestamp sent, in ns as a string (a JavaScript number would round
    it), for the next call's `after`."""
    window_start = time.time_ns() - int(TREND_S * NS)
    start = max(after_ns + 1, window_start) if after_ns is not None else window_start
    points = await historian.points(TELEMETRY.name, tags={"machine": machine}, start_ns=start)
    series: dict[str, Json] = {}
    for point in points:
        signal = point.tags.get("signal", "")
        column = series.setdefault(signal, {"unit": unit_of(signal), "t": [], "v": []})
        good = point.fields.get("quality", Quality.GOOD) == Quality.GOOD
        column["t"].append(point.ts / NS)
        column["v"].append(_finite(point.fields.get("value")) if good else None)
    newest = max((p.ts for p in points), default=after_ns)
    return {"machine": machine, "series": series, "until": None if newest is None else str(newest)}


def _finite(value: object) -> float | None:
    """A number JSON can carry, else None (NaN and infinities are not JSON)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
