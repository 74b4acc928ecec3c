"""Anomalies: what the detectors flagged, as episodes, next to the faults that were injected."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import timeseries

from core.schema import EventKind
from core.severity import SEVERITY_CAP
from dashboards import events
from dashboards.influxql import ANOMALY_Q, SITE_LINE, STALE_S, InfluxQL
from dashboards.panels import (
    MERGE,
    SEVERITY_CELL,
    SEVERITY_STEPS,
    Json,
    build_dashboard,
    organize,
    props,
    table,
    time_series,
)

UID = "shopfloor-anomalies"
SEVERITY_DESCRIPTION = (
    "severity: the score as a multiple of the detector's limit, clipped to 0-"
    f"{SEVERITY_CAP:g}, so every detector shares one scale: 1 is the limit (low), 2 high, 5 "
    f"critical (dashed lines). A gap is no score for over {STALE_S} s."
)


def build() -> Json:
    """The Anomalies dashboard model."""
    return build_dashboard(
        UID,
        "Anomalies",
        "Anomaly episodes per machine (start, end, duration, top signal, peak severity) and "
        "the injected faults they should match.",
        [
            ("Now", [(_severity(), 14, 8), (events.open_episodes(), 10, 8)]),
            (
                "Episodes",
                [
                    (events.ended_episodes(), 24, 10),
                    (_flagged_windows(), 24, 8),
                    (
                        events.event_log(
                            "Injected faults (ground truth)",
                            "Faults the simulator injected (or a plant recorded), to compare "
                            "with the episodes above: a fault without an episode is a miss, an "
                            "episode without a fault a false alarm or an unknown fault.",
                            kind=EventKind.FAULT,
                        ),
                        24,
                        8,
                    ),
                ],
            ),
        ],
        annotations=events.annotations(),
    )


def severity_query(where: str, group_by: str) -> str:
    """The highest severity per interval (a short spike is never averaged away)."""
    return (
        f'SELECT max("severity") AS "severity" FROM {ANOMALY_Q}'
        f' WHERE {where} AND $timeFilter GROUP BY time($__interval), "{group_by}" fill(null)'
    )


def severity_series(title: str, description: str, query: InfluxQL) -> timeseries.Panel:
    """Severity over time on its bounded axis, a dashed line at each level's floor."""
    return time_series(title, description, query, steps=SEVERITY_STEPS).min(0.0).max(SEVERITY_CAP)


def _severity() -> timeseries.Panel:
    return severity_series(
        "Anomaly severity per machine",
        f"Each machine's {SEVERITY_DESCRIPTION}",
        InfluxQL(severity_query(SITE_LINE, "machine"), alias="$tag_machine"),
    )


def _flagged_windows() -> timeseries.Panel:
    query = (
        f'SELECT count("score") FROM {ANOMALY_Q} WHERE "is_anomaly" = true'
        f' AND {SITE_LINE} AND $timeFilter GROUP BY time($__interval), "machine" fill(none)'
    )
    return time_series(
        "Anomalous windows per machine",
        "How many scored windows were above the threshold, per interval (bars, no bar when "
        "none): isolated bars are noise that the k-of-n alarm logic keeps from opening an "
        "episode.",
        InfluxQL(query, alias="$tag_machine"),
        interval="1m",
        bars=True,
    )


def latest_severity(
    title: str,
    description: str,
    *,
    group_by: str,
    machine_regex: str = "",
    sort: str = "",
) -> table_panel.Panel:
    """The newest severity of each `group_by` tag value, coloured by level, with its top
    signal and how old it is; `machine_regex` narrows it to matching machines. No raw score:
    one detector's score means nothing beside another's."""
    machine = events.machine_filter(machine_regex)
    query = (
        'SELECT last("severity") AS "severity", "top_signal"'
        f' FROM {ANOMALY_Q} WHERE {SITE_LINE}{machine} AND $timeFilter GROUP BY "{group_by}"'
    )
    return (
        table(
            title,
            description,
            InfluxQL(query, table=True),
            [
                MERGE,
                organize(
                    order=[group_by, "severity", "top_signal", "Time"],
                    rename={"Time": "at", "top_signal": "top signal"},
                ),
            ],
            sort=sort,
        )
        .override_by_name("severity", SEVERITY_CELL)
        .override_by_name("at", props(unit="dateTimeFromNow"))
    )
