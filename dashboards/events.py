"""Panels and annotations on the `events` measurement, shared by several dashboards.

`events` holds injected faults (kind `fault`, written by the simulator as ground truth) and
anomaly episodes (kind `anomaly`, written by analytics.online): an episode writes one point
with active=true when it opens and one with active=false when it closes (also when detection
stops cleanly). Both carry the fields top_signal and peak_severity, the closing one duration_s
too, which the episode tables select; the text says the same for the annotations.
"""

# No `from __future__ import annotations`: the function `annotations` below takes that name.
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from core.schema import EventKind
from dashboards.influxql import ANOMALY_Q, EVENTS_Q, SITE_LINE, InfluxQL, annotation
from dashboards.panels import (
    MERGE,
    SEVERITY_CELL,
    WRAPPED,
    organize,
    props,
    sort_by,
    table,
    value_mappings,
)

ACTIVE_MAPPINGS = value_mappings(("true", "started", "red"), ("false", "ended", "green"))
# An open episode whose detector has written no score for this long has ended (detection was
# killed, or lost its historian): the in-progress table leaves it out.
DETECTOR_SILENT_S = 120

# The two kinds of events, as a WHERE clause: injected faults (ground truth), anomaly episodes.
FAULTS = f"\"kind\" = '{EventKind.FAULT}'"
EPISODES = f"\"kind\" = '{EventKind.ANOMALY}'"


def machine_filter(machine_regex: str) -> str:
    """An AND clause on the machine tag, or '' for every machine."""
    return f' AND "machine" =~ /^{machine_regex}$/' if machine_regex else ""


def annotations(machine_regex: str = "", *, enabled: bool = True) -> list[dash.AnnotationQuery]:
    """Fault and anomaly-episode starts as annotations on every time panel, each kind its own
    toggle: one line per fault or episode (its start; the tables give the end), not two."""
    where = f"{SITE_LINE}{machine_filter(machine_regex)}"
    return [
        annotation(
            name,
            color,
            f'SELECT "text" FROM {EVENTS_Q} WHERE {kind} AND "active" = true AND {where}'
            ' AND $timeFilter GROUP BY "machine"',
            enabled=enabled,
        )
        for name, color, kind in (
            ("Injected faults", "orange", FAULTS),
            ("Anomaly episodes", "red", EPISODES),
        )
    ]


def _by_ref(ref: str) -> model.MatcherConfig:
    return model.MatcherConfig(id_val="byRefId", options=ref)


def event_log(
    title: str, description: str, kind: str = "", machine_regex: str = ""
) -> table_panel.Panel:
    """Every event point in the time range, newest first: when, machine, kind (unless one
    `kind` is asked for), text, started or ended."""
    kind_clause = f"\"kind\" = '{kind}' AND " if kind else ""
    query = (
        f'SELECT "text", "active" FROM {EVENTS_Q} WHERE {kind_clause}{SITE_LINE}'
        f'{machine_filter(machine_regex)} AND $timeFilter GROUP BY "machine", "kind"'
    )
    shown = organize(hide=["kind"] if kind else [], rename={"Time": "at"})
    return (
        table(
            title,
            description,
            InfluxQL(query, table=True),
            [MERGE, sort_by("Time"), shown],
            sort="at",
        )
        .override_by_name(
            "active",
            props(
                mappings=ACTIVE_MAPPINGS,
                custom__cellOptions={"type": cm.TableCellDisplayMode.COLOR_TEXT},
            ),
        )
        .override_by_name("text", WRAPPED)
    )


def _binary(left: str, operator: str, right: str, alias: str) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(
        id_val="calculateField",
        options={
            "mode": "binary",
            "binary": {"left": left, "operator": operator, "right": right},
            "alias": alias,
            "replaceFields": False,
        },
    )


def ended_episodes() -> table_panel.Panel:
    """One row per closed anomaly episode: machine, start, end, duration, top signal, peak."""
    query = (
        f'SELECT "duration_s", "top_signal", "peak_severity" FROM {EVENTS_Q}'
        f' WHERE {EPISODES} AND "active" = false AND {SITE_LINE} AND $timeFilter'
        ' GROUP BY "machine"'
    )
    transformations = [
        MERGE,
        _binary("duration_s", "*", "1000", "duration_ms"),
        _binary("Time", "-", "duration_ms", "start"),
        model.DataTransformerConfig(
            id_val="convertFieldType",
            options={"conversions": [{"targetField": "start", "destinationType": "time"}]},
        ),
        organize(
            order=["machine", "start", "Time", "duration_s", "top_signal", "peak_severity"],
            rename={
                "Time": "end",
                "duration_s": "duration",
                "top_signal": "top signal",
                "peak_severity": "peak severity",
            },
            hide=["duration_ms"],
        ),
        sort_by("start"),
    ]
    return (
        table(
            "Anomaly episodes (ended)",
            "Each closed anomaly episode in the time range (closed by the detector, or when "
            "detection stopped cleanly). Start is end minus duration; the top signal is the "
            "one that contributed most when the episode opened (the onset names a fault better "
            "than its peak, which is often an after-effect).",
            InfluxQL(query, table=True),
            transformations,
            sort="start",
        )
        .override_by_name("duration", props(unit="dtdurations"))
        .override_by_name("peak severity", SEVERITY_CELL)
    )


def open_episodes() -> table_panel.Panel:
    """The machines whose latest episode event opened one and whose detector still scores: an
    anomaly going on now. Query A keeps the machines whose last episode event is an opening one
    (filtered in InfluxQL: after a join Grafana renames the fields a filter would name); B
    lists the machines scored in the last DETECTOR_SILENT_S; an inner join on machine drops the
    episodes a silent detector left open."""
    latest = (
        f'SELECT last("active") AS "active", "top_signal", "peak_severity" FROM {EVENTS_Q}'
        f' WHERE {EPISODES} AND {SITE_LINE} AND $timeFilter GROUP BY "machine"'
    )
    events = (
        f'SELECT "active", "top_signal", "peak_severity" FROM ({latest})'
        ' WHERE "active" = true GROUP BY "machine"'
    )
    scored = (
        f'SELECT last("score") AS "scored" FROM {ANOMALY_Q} WHERE {SITE_LINE}'
        f' AND time > now() - {DETECTOR_SILENT_S}s GROUP BY "machine"'
    )
    # Named before the join: joined fields are shown with their frame's name appended, which
    # a rename or an override after the join would have to spell.
    shown_a = organize(
        order=["machine", "Time", "top_signal", "peak_severity"],
        rename={"Time": "since", "top_signal": "top signal", "peak_severity": "severity at start"},
        hide=["active"],
    )
    transformations = [
        model.DataTransformerConfig(id_val="merge", filter_val=_by_ref("A"), options={}),
        model.DataTransformerConfig(id_val="merge", filter_val=_by_ref("B"), options={}),
        model.DataTransformerConfig(
            id_val="organize", filter_val=_by_ref("A"), options=shown_a.options
        ),
        model.DataTransformerConfig(
            id_val="organize",
            filter_val=_by_ref("B"),
            options=organize(hide=["Time", "scored"]).options,
        ),
        model.DataTransformerConfig(
            id_val="joinByField", options={"byField": "machine", "mode": "inner"}
        ),
    ]
    return (
        table(
            "Anomaly episodes in progress",
            "Machines whose last anomaly event in the time range opened an episode that has not "
            "closed yet, with the signal that contributed most and the severity when it opened. "
            f"An episode whose detector has written no score for {DETECTOR_SILENT_S} s counts "
            "as ended (detection stopped without closing it).",
            InfluxQL(events, table=True),
            transformations,
        )
        .with_target(InfluxQL(scored, ref="B", table=True))
        .override_by_name("severity at start", SEVERITY_CELL)
        .override_by_name("since", props(unit="dateTimeFromNow"))
    )
