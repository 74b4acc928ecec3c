"""Panels and annotations on the `events` measurement, shared by several dashboards.

`events` holds injected faults (kind `fault`, written by the simulator as ground truth) and
anomaly episodes (kind `anomaly`, written by analytics.online): an episode writes one point
with active=true when it opens and one with active=false when it closes. Both carry the fields
top_signal and peak_score, the closing one duration_s too, which the episode tables select;
the text says the same for the annotations.
"""

from __future__ import annotations

from dashboards.grafana import (
    MERGE,
    Json,
    annotation,
    influxql,
    organize,
    override,
    table,
    value_mappings,
)

ACTIVE_MAPPINGS = value_mappings(("true", "started", "red"), ("false", "ended", "green"))


def machine_filter(machine_regex: str) -> str:
    """An AND clause on the machine tag, or '' for every machine."""
    return f' AND "machine" =~ /^{machine_regex}$/' if machine_regex else ""


def annotations(machine_regex: str = "") -> list[Json]:
    """Fault and anomaly-episode events as annotations on every time panel."""
    where = machine_filter(machine_regex)
    return [
        annotation(
            "Injected faults",
            "orange",
            f'SELECT "text" FROM "events" WHERE "kind" = \'fault\'{where} AND $timeFilter'
            ' GROUP BY "machine"',
        ),
        annotation(
            "Anomaly episodes",
            "red",
            f'SELECT "text" FROM "events" WHERE "kind" = \'anomaly\'{where} AND $timeFilter'
            ' GROUP BY "machine"',
        ),
    ]


def event_log(title: str, description: str, kind: str = "", machine_regex: str = "") -> Json:
    """Every event point in the time range, newest first: machine, kind, text, active."""
    kind_clause = f"\"kind\" = '{kind}' AND " if kind else ""
    query = (
        f'SELECT "text", "active" FROM "events" WHERE {kind_clause}$timeFilter'
        f'{machine_filter(machine_regex)} GROUP BY "machine", "kind"'
    )
    return table(
        title,
        description,
        [influxql(query, table=True)],
        transformations=[MERGE, _sort("Time")],
        overrides=[
            override("active", mappings=ACTIVE_MAPPINGS, custom__cellOptions={"type": "color-text"})
        ],
        sort_by="Time",
    )


def ended_episodes() -> Json:
    """One row per closed anomaly episode: machine, start, end, duration, top signal, peak."""
    query = (
        'SELECT "duration_s", "top_signal", "peak_score" FROM "events"'
        ' WHERE "kind" = \'anomaly\' AND "active" = false AND $timeFilter GROUP BY "machine"'
    )
    return table(
        "Anomaly episodes (ended)",
        "Each closed anomaly episode in the time range. Start is end minus duration; the top "
        "signal is the one that contributed most when the episode opened (the onset names a "
        "fault better than its peak, which is often an after-effect).",
        [influxql(query, table=True)],
        transformations=[
            MERGE,
            _binary("duration_s", "*", "1000", "duration_ms"),
            _binary("Time", "-", "duration_ms", "start"),
            {
                "id": "convertFieldType",
                "options": {"conversions": [{"targetField": "start", "destinationType": "time"}]},
            },
            organize(
                order=["machine", "start", "Time", "duration_s", "top_signal", "peak_score"],
                rename={"Time": "end", "duration_s": "duration", "peak_score": "peak score"},
                hide=["duration_ms"],
            ),
            _sort("start"),
        ],
        overrides=[override("duration", unit="s"), override("peak score", decimals=3)],
        sort_by="start",
    )


def open_episodes() -> Json:
    """The machines whose latest episode event opened one: an anomaly going on now."""
    query = (
        'SELECT last("active") AS "active", "top_signal", "peak_score" FROM "events"'
        ' WHERE "kind" = \'anomaly\' AND $timeFilter GROUP BY "machine"'
    )
    return table(
        "Anomaly episodes in progress",
        "Machines whose last anomaly event in the time range opened an episode that has not "
        "closed yet, with the signal that contributed most and the score when it opened.",
        [influxql(query, table=True)],
        transformations=[
            MERGE,
            {
                "id": "filterByValue",
                "options": {
                    "type": "include",
                    "match": "all",
                    "filters": [
                        {
                            "fieldName": "active",
                            "config": {"id": "equal", "options": {"value": True}},
                        }
                    ],
                },
            },
            organize(
                order=["machine", "Time", "top_signal", "peak_score"],
                rename={"Time": "since", "peak_score": "score at start"},
                hide=["active"],
            ),
        ],
        overrides=[override("score at start", decimals=3)],
    )


def _binary(left: str, operator: str, right: str, alias: str) -> Json:
    return {
        "id": "calculateField",
        "options": {
            "mode": "binary",
            "binary": {"left": left, "operator": operator, "right": right},
            "alias": alias,
            "replaceFields": False,
        },
    }


def _sort(field: str) -> Json:
    return {"id": "sortBy", "options": {"sort": [{"field": field, "desc": True}]}}
