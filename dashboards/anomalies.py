"""Anomalies: what the detectors flagged, as episodes, next to the faults that were injected."""

from __future__ import annotations

from collections.abc import Sequence

from dashboards import events
from dashboards.grafana import (
    FLAG_MAPPINGS,
    MERGE,
    Json,
    Layout,
    dashboard,
    influxql,
    organize,
    override,
    table,
    timeseries,
)

UID = "shopfloor-anomalies"


def build() -> Json:
    """The Anomalies dashboard model."""
    layout = Layout()
    layout.row("Now")
    layout.add(_score_ratio(), 16, 8)
    layout.add(events.open_episodes(), 8, 8)
    layout.row("Episodes")
    layout.add(events.ended_episodes(), 24, 10)
    layout.add(_flagged_windows(), 12, 8)
    layout.add(
        events.event_log(
            "Injected faults (ground truth)",
            "Faults the simulator injected (or a plant recorded), to compare with the "
            "episodes above: a fault without an episode is a miss, an episode without a "
            "fault a false alarm or an unknown fault.",
            kind="fault",
        ),
        12,
        8,
    )
    return dashboard(
        UID,
        "Anomalies",
        "Anomaly episodes per machine (start, end, duration, top signal, peak score) and "
        "the injected faults they should match.",
        layout,
        annotations=events.annotations(),
        time_from="now-6h",
    )


def _score_ratio() -> Json:
    query = (
        'SELECT max("score") / max("threshold") FROM "anomaly" WHERE $timeFilter'
        ' GROUP BY time($__interval), "machine" fill(none)'
    )
    return timeseries(
        "Anomaly score / threshold per machine",
        "Each machine's score divided by its own threshold, so all machines share one scale: "
        "above 1 (dashed line) a window is anomalous.",
        [influxql(query, alias="$tag_machine")],
        threshold_line=1.0,
    )


def _flagged_windows() -> Json:
    query = (
        'SELECT count("score") FROM "anomaly" WHERE "is_anomaly" = true AND $timeFilter'
        ' GROUP BY time($__interval), "machine" fill(none)'
    )
    return timeseries(
        "Anomalous windows per machine",
        "How many scored windows were above the threshold, per interval: isolated bars are "
        "noise that the k-of-n alarm logic keeps from opening an episode.",
        [influxql(query, alias="$tag_machine")],
        interval="1m",
        bars=True,
    )


def latest_scores(
    title: str,
    description: str,
    *,
    group_by: str,
    machine_regex: str = "",
    order: Sequence[str] = (),
    sort_by: str = "",
) -> Json:
    """The newest score of each `group_by` tag value with its threshold, whether it is
    anomalous (red) and its top signal; `machine_regex` narrows it to matching machines."""
    machine = f'"machine" =~ /^{machine_regex}$/ AND ' if machine_regex else ""
    query = (
        'SELECT last("score") AS "score", "threshold", "is_anomaly", "top_signal"'
        f' FROM "anomaly" WHERE {machine}$timeFilter GROUP BY "{group_by}"'
    )
    return table(
        title,
        description,
        [influxql(query, table=True)],
        transformations=[
            MERGE,
            organize(order=order, rename={"Time": "at", "is_anomaly": "anomalous"}),
        ],
        overrides=[
            override(
                "anomalous",
                mappings=FLAG_MAPPINGS,
                custom__cellOptions={"type": "color-background"},
            ),
            override("score", decimals=3),
            override("threshold", decimals=3),
        ],
        sort_by=sort_by,
    )
