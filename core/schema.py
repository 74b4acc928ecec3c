"""The data model (docs/data-model.md) as data: every measurement's tag keys and
typed field keys.

Backends use it to lay out SQLite tables, to write each field with its declared type (InfluxDB
refuses a float field that later arrives as an integer) and to tell tag columns from field
columns in query results; dashboard tests use it to check their queries.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from core.sample import Point, Quality, SeriesKey
from core.storage import HistorianError

FieldType = type[float] | type[int] | type[bool] | type[str]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: its tag keys (in series-key order) and its fields with their types."""

    name: str
    tags: tuple[str, ...]
    fields: Mapping[str, FieldType]


class MachineState(IntEnum):
    """The codes of every machine's `state` signal: the one definition its readers share (OEE,
    the live status, the dashboards). Ordered by how much a bucket's worst value matters, so
    max() over an interval never averages a fault away: faulted beats running beats idle."""

    STOPPED = 0
    IDLE = 1
    RUNNING = 2
    FAULTED = 3


STATE_SIGNAL = "state"

# A connector records an unchanged tag again after this long (the OPC UA `max_age_s` default), so
# a reader that wants a change-only signal's current value looks back twice that, and a signal
# silent for longer is stale (dead line, dead connector), not "still the same".
KEEP_ALIVE_S = 60.0

# How far back the dashboards and the live view look for a PLC alarm's newest event: an alarm
# raised earlier and unchanged since is not listed as active (a connector's ConditionRefresh
# on reconnect writes it again), and the look-back bounds what each refresh reads.
ALARM_LOOKBACK_S = 7 * 86400

# `value` holds every number (booleans as 0/1, enumerations as their code); `text` holds what
# is not a number (strings, DateTime as ISO 8601 UTC, an enumeration's name): one field per
# type, since InfluxDB fixes a field's type per measurement (docs/data-model.md, "Values").
TELEMETRY = Measurement(
    "telemetry",
    ("site", "line", "machine", "signal"),
    {"value": float, "quality": int, "text": str},
)
ANOMALY = Measurement(
    "anomaly",
    ("site", "line", "machine", "detector"),
    {
        "score": float,
        "threshold": float,
        "severity": float,
        "is_anomaly": bool,
        "top_signal": str,
        "model_version": str,  # the machine's model version that gave the score: v3
        "planned": bool,  # in a planned period of the machine: scored, but no episode opens
    },
)
# Anomaly episodes (kind `anomaly`) also carry top_signal, peak_score and peak_severity (the
# bounded scale of core.severity), and duration_s on the closing event, so dashboards select
# them instead of parsing the text; faults do not.
EVENTS = Measurement(
    "events",
    ("site", "line", "machine", "kind"),
    {
        "text": str,
        "active": bool,
        "top_signal": str,
        "peak_score": float,
        "peak_severity": float,
        "duration_s": float,
        "machines": str,
        "label": str,
        "note": str,
        "by": str,
        "episode": str,
        # PLC alarms (kind `alarm`, OPC UA conditions): connectors/opcua/alarms.py
        "acked": bool,
        "comment": str,
        "confirmed": bool,
        "retain": bool,
        "source": str,
        "condition": str,
        "condition_id": str,
        "alarm_severity": int,
        "severity_level": int,
        "event_id": str,
        "receive_time_ns": int,
        # stops of a machine (kind `stop`): analytics/downtime.py; duration_s on the closing one
        "reason": str,
        "category": str,
        "micro_stop": bool,
        # history backfills (kind `backfill`): connectors/opcua/backfill.py
        "backfilled": int,
        "unfilled": int,
        "unfilled_s": float,
    },
)
CONNECTOR = Measurement(
    "connector",
    ("connector", "endpoint"),
    {
        "connected": bool,
        "samples": int,
        "errors": int,
        "reconnects": int,
        "latency_ms": float,
        "spool_bytes": int,
        "spool_dropped": int,
        "spool_unreadable_bytes": int,
    },
)
KPI = Measurement(
    "kpi",
    ("site", "line", "machine"),
    {
        "availability": float,
        "performance": float,
        "quality": float,
        "oee": float,
        # availability's losses by category (core.reasons): 1 - availability is their sum
        "planned_loss": float,
        "unplanned_loss": float,
    },
)


class EventKind(StrEnum):
    """The `kind` tag of `events`: who wrote the event."""

    FAULT = "fault"  # an injected fault, written by the simulated line: detection's ground truth
    ANOMALY = "anomaly"  # an anomaly episode opened or closed by the online detector
    ALARM = "alarm"  # a PLC alarm (OPC UA condition) as the PLC reported it, by a connector
    BACKFILL = "backfill"  # a connector filled an outage from the server's history
    # overlapping episodes of a line as one (tag `machine`: the likely origin), opened, grown
    # (`machines`: every machine it reached, in the order they joined) and closed
    INCIDENT = "incident"
    # an operator's verdict on an episode or incident (`episode`: its id), with who and a note
    LABEL = "label"
    # a machine's planned period (cleaning, maintenance): from the point's time for duration_s;
    # the detector opens no episode of that machine then (`shopfloor plan`)
    PLANNED = "planned"
    # a machine stood (state idle or faulted): opened, and closed with its reason, category
    # (planned or unplanned), duration_s and micro_stop (analytics.downtime)
    STOP = "stop"


class Verdict(StrEnum):
    """What an operator says an episode or incident was (`label` field of a label event)."""

    FAULT = "fault"  # a real fault: the flag was right
    FALSE_ALARM = "false_alarm"  # nothing was wrong
    PLANNED = "planned"  # cleaning, a changeover, maintenance: expected, not a fault


MEASUREMENTS: Mapping[str, Measurement] = {
    m.name: m for m in (TELEMETRY, ANOMALY, EVENTS, CONNECTOR, KPI)
}


def measurement(name: str) -> Measurement:
    """The model entry for `name`; an unknown name is a caller error worth a clear message."""
    try:
        return MEASUREMENTS[name]
    except KeyError:
        known = ", ".join(MEASUREMENTS)
        raise HistorianError(f"unknown measurement {name!r}; the data model has: {known}") from None


def check_point(point: Point) -> Measurement:
    """Refuse a point whose tags or fields are not in the model, so every backend stores the same.

    Tags and fields may be a subset of the model (a missing tag reads back as absent).
    """
    model = measurement(point.measurement)
    extra_tags = point.tags.keys() - set(model.tags)
    extra_fields = point.fields.keys() - model.fields.keys()
    if extra_tags or extra_fields:
        extra = ", ".join(sorted(extra_tags | extra_fields))
        raise HistorianError(f"{point.measurement}: not in the data model: {extra}")
    if not point.fields:
        raise HistorianError(f"{point.measurement}: a point needs at least one field")
    return model


def check_tags(model: Measurement, tags: Mapping[str, str]) -> None:
    """Refuse a tag filter on a key the measurement does not have (it would match nothing)."""
    unknown = tags.keys() - set(model.tags)
    if unknown:
        raise HistorianError(f"{model.name} has no tag {', '.join(sorted(unknown))}")


def telemetry_point(
    key: SeriesKey,
    ts: int,
    quality: Quality,
    *,
    value: float | None = None,
    text: str | None = None,
) -> Point:
    """A telemetry reading that carries text (a string tag, a DateTime, an enumeration's name
    beside its code): the way inputs hand on what a `Sample`, a number only, cannot hold."""
    site, line, machine, signal = key
    fields: dict[str, float | int | bool | str] = {"quality": int(quality)}
    if value is not None and math.isfinite(value):
        fields["value"] = float(value)
    if text is not None:
        fields["text"] = text
    tags = {"site": site, "line": line, "machine": machine, "signal": signal}
    return Point(TELEMETRY.name, tags, fields, ts)


def telemetry_quality(stored: int | None) -> Quality:
    """The quality of a stored telemetry point; one written without it (by another tool)
    reads as uncertain."""
    return Quality.UNCERTAIN if stored is None else Quality(stored)


def typed_fields(point: Point) -> dict[str, float | int | bool | str]:
    """The point's fields as their model types, non-finite floats left out (neither line
    protocol nor SQLite can store NaN); checks the point against the model first."""
    model = check_point(point)
    fields = {}
    for key, value in point.fields.items():
        typed = coerce_field(model.fields[key], value)
        if not (isinstance(typed, float) and not math.isfinite(typed)):
            fields[key] = typed
    return fields


def coerce_field(kind: FieldType, value: float | int | bool | str) -> float | int | bool | str:
    """A stored value as the model's type: InfluxDB's JSON says `2` for the float 2.0, SQLite
    says `1` for True."""
    return kind(value)


# Characters that InfluxDB line protocol escapes in tag keys, tag values and field keys; a name
# may hold them, but not a backslash right before one (it could not be read back the same).
KEY_SPECIALS = ",= "


def name_problem(text: str) -> str | None:
    """Why a name (tag value, measurement, field key) cannot be written faithfully, if it
    cannot: the one rule that connectors files are checked against when they load, and that
    every backend enforces when it writes."""
    control = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"holds the control character {control!r}"
    if text.endswith("\\"):
        return "ends with a backslash"
    if any("\\" + c in text for c in KEY_SPECIALS):
        return "has a backslash before a comma, an equals sign or a space"
    return None
