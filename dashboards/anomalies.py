"""Anomalies: what the detectors flagged, as episodes, next to the faults that were injected."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import common as cm

from core.schema import EventKind
from dashboards import events
from dashboards.influxql import ANOMALY_Q, SITE_LINE, STALE_S, InfluxQL
from dashboards.panels import (
    FLAG_MAPPINGS,
    MERGE,
    Json,
    build_dashboard,
    organize,
    props,
    table,
    time_series,
)

UID = "shopfloor-anomalies"
SCORE_RATIO_DESCRIPTION = (
    "score / threshold, so every detector shares one scale: 1 (dashed) is the limit, above it "
    "a window is anomalous. Log axis: one huge score does not flatten the rest to zero. A gap "
    f"is no score for over {STALE_S} s."
)


def build() -> Json:
    """The Anomalies dashboard model."""
    return build_dashboard(
        UID,
        "Anomalies",
        "Anomaly episodes per machine (start, end, duration, top signal, peak score) and "
        "the injected faults they should match.",
        [
            ("Now", [(_score_ratio(), 16, 8), (events.open_episodes(), 8, 8)]),
            (
                "Episodes",
                [
                    (events.ended_episodes(), 24, 10),
                    (_flagged_windows(), 12, 8),
                    (
                        events.event_log(
                            "Injected faults (ground truth)",
                            "Faults the simulator injected (or a plant recorded), to compare "
                            "with the episodes above: a fault without an episode is a miss, an "
                            "episode without a fault a false alarm or an unknown fault.",
                            kind=EventKind.FAULT,
                        ),
                        12,
                        8,
                    ),
                ],
            ),
        ],
        annotations=events.annotations(),
        time_from="now-6h",
    )


def score_ratio_query(where: str, group_by: str) -> str:
    """The largest score/threshold per interval (a short spike is never averaged away)."""
    return (
        f'SELECT max("score") / max("threshold") AS "score/threshold" FROM {ANOMALY_Q}'
        f' WHERE {where} AND $timeFilter GROUP BY time($__interval), "{group_by}" fill(null)'
    )


def _score_ratio() -> timeseries.Panel:
    return time_series(
        "Anomaly score / threshold per machine",
        f"Each machine's {SCORE_RATIO_DESCRIPTION}",
        InfluxQL(score_ratio_query(SITE_LINE, "machine"), alias="$tag_machine"),
        threshold_line=1.0,
        log_axis=True,
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


def latest_scores(
    title: str,
    description: str,
    *,
    group_by: str,
    machine_regex: str = "",
    order: Sequence[str] = (),
    sort: str = "",
) -> table_panel.Panel:
    """The newest score of each `group_by` tag value with its threshold, whether it is
    anomalous (red), its top signal, and how old it is; `machine_regex` narrows it to
    matching machines."""
    machine = events.machine_filter(machine_regex)
    query = (
        'SELECT last("score") AS "score", "threshold", "is_anomaly", "top_signal"'
        f' FROM {ANOMALY_Q} WHERE {SITE_LINE}{machine} AND $timeFilter GROUP BY "{group_by}"'
    )
    return (
        table(
            title,
            description,
            InfluxQL(query, table=True),
            [MERGE, organize(order=order, rename={"Time": "at", "is_anomaly": "anomalous"})],
            sort=sort,
        )
        .override_by_name(
            "anomalous",
            props(
                mappings=FLAG_MAPPINGS,
                custom__cellOptions={"type": cm.TableCellDisplayMode.COLOR_BACKGROUND},
            ),
        )
        .override_by_name("score", props(decimals=3))
        .override_by_name("threshold", props(decimals=3))
        .override_by_name("at", props(unit="dateTimeFromNow"))
    )
