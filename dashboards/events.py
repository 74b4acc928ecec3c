"""Panels and annotations on the `events` measurement, shared by several dashboards.

`events` holds injected faults (kind `fault`, written by the simulator as ground truth) and
anomaly episodes (kind `anomaly`, written by analytics.online): an episode writes one point
with active=true when it opens and one with active=false when it closes, whose text reads
"anomaly on M ended after N s: peak score X on SIGNAL". The episode table takes start,
duration, peak score and top signal out of that text (Grafana's regex field extraction).
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

# Named groups become columns; tests run this pattern on the text analytics writes.
ENDED_EPISODE_PATTERN = (
    r"ended after (?<duration_s>[0-9.]+) s: peak score (?<peak_score>\S+) on (?<top_signal>\S+)$"
)
OPEN_EPISODE_PATTERN = r"^anomaly on \S+: (?<top_signal>\S+) \(score (?<score>\S+)\)$"
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
        'SELECT "text" FROM "events" WHERE "kind" = \'anomaly\' AND "active" = false'
        ' AND $timeFilter GROUP BY "machine"'
    )
    return table(
        "Anomaly episodes (ended)",
        "Each closed anomaly episode in the time range. Start is end minus duration; the top "
        "signal is the one that contributed most to the score at its peak.",
        [influxql(query, table=True)],
        transformations=[
            MERGE,
            _extract(ENDED_EPISODE_PATTERN),
            _to_number("duration_s", "peak_score"),
            _binary("duration_s", "*", "1000", "duration_ms"),
            _binary("Time", "-", "duration_ms", "start"),
            {
                "id": "convertFieldType",
                "options": {"conversions": [{"targetField": "start", "destinationType": "time"}]},
            },
            organize(
                order=["machine", "start", "Time", "duration_s", "top_signal", "peak_score"],
                rename={"Time": "end", "duration_s": "duration", "peak_score": "peak score"},
                hide=["text", "duration_ms"],
            ),
            _sort("start"),
        ],
        overrides=[override("duration", unit="s"), override("peak score", decimals=3)],
        sort_by="start",
    )


def open_episodes() -> Json:
    """The machines whose latest episode event opened one: an anomaly going on now."""
    query = (
        'SELECT last("active") AS "active", "text" FROM "events" WHERE "kind" = \'anomaly\''
        ' AND $timeFilter GROUP BY "machine"'
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
            _extract(OPEN_EPISODE_PATTERN),
            _to_number("score"),
            organize(
                order=["machine", "Time", "top_signal", "score"],
                rename={"Time": "since", "score": "score at start"},
                hide=["text", "active"],
            ),
        ],
        overrides=[override("score at start", decimals=3)],
    )


def _extract(pattern: str) -> Json:
    return {
        "id": "extractFields",
        "options": {"source": "text", "format": "regexp", "regExp": f"/{pattern}/"},
    }


def _to_number(*fields: str) -> Json:
    return {
        "id": "convertFieldType",
        "options": {
            "conversions": [{"targetField": f, "destinationType": "number"} for f in fields]
        },
    }


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
