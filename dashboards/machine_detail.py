"""Machine detail: every signal of one machine with its unit, its anomaly score against the
threshold, and its fault and anomaly events as annotations.

`$machine` and `$signal` are read from the historian (SHOW TAG VALUES), so the machines and
signals of whatever line writes there appear without editing the dashboard.
"""

from __future__ import annotations

from dashboards import anomalies, events
from dashboards.grafana import (
    QUALITY_MAPPINGS,
    STATE_MAPPINGS,
    Json,
    Layout,
    dashboard,
    influxql,
    query_variable,
    regex_override,
    stat,
    state_timeline,
    timeseries,
    unit_overrides,
)

UID = "shopfloor-machine-detail"
MACHINE = '"machine" =~ /^$machine$/'
SIGNALS = '"signal" =~ /^$signal$/'


def build() -> Json:
    """The Machine detail dashboard model."""
    layout = Layout()
    layout.row("State and latest values")
    layout.add(_state(), 24, 4)
    layout.add(_latest(), 24, 5)
    layout.row("Signals")
    layout.add(_signal(), 8, 7)
    layout.add(_quality(), 24, 5)
    layout.row("Anomaly detection")
    layout.add(_score(), 16, 8)
    layout.add(
        anomalies.latest_scores(
            "Latest score and top signal",
            "The newest score, its threshold, whether it is anomalous and which signal "
            "contributed most: where to look first.",
            group_by="detector",
            machine_regex="$machine",
        ),
        8,
        8,
    )
    layout.add(
        events.event_log(
            "Events of this machine",
            "Injected faults and anomaly episodes of this machine in the time range.",
            machine_regex="$machine",
        ),
        24,
        7,
    )
    return dashboard(
        UID,
        "Machine detail",
        "Every signal of one machine, its anomaly score against the threshold, its events.",
        layout,
        variables=[
            query_variable(
                "machine", "Machine", 'SHOW TAG VALUES FROM "telemetry" WITH KEY = "machine"'
            ),
            query_variable(
                "signal",
                "Signal",
                f'SHOW TAG VALUES FROM "telemetry" WITH KEY = "signal" WHERE {MACHINE}',
                multi=True,
            ),
        ],
        annotations=events.annotations("$machine"),
        time_from="now-30m",
    )


def _state() -> Json:
    query = (
        f'SELECT last("value") FROM "telemetry" WHERE {MACHINE} AND "signal" = \'state\''
        " AND $timeFilter GROUP BY time($__interval) fill(previous)"
    )
    return state_timeline(
        "State",
        "Stopped, idle, running or faulted over time.",
        [influxql(query, alias="state")],
        STATE_MAPPINGS,
    )


def _latest() -> Json:
    query = (
        f'SELECT last("value") FROM "telemetry" WHERE {MACHINE} AND {SIGNALS} AND $timeFilter'
        ' GROUP BY "signal"'
    )
    return stat(
        "Latest values",
        "The newest good value of each selected signal, in the unit its name carries.",
        [influxql(query, alias="$tag_signal")],
        overrides=unit_overrides(),
    )


def _signal() -> Json:
    query = (
        f'SELECT mean("value") FROM "telemetry" WHERE {MACHINE} AND {SIGNALS} AND $timeFilter'
        ' GROUP BY time($__interval), "signal" fill(none)'
    )
    panel = timeseries(
        "$signal",
        "One panel per signal (repeated for each value of $signal), in the unit its name "
        "carries (e.g. _c °C, _a A, _mm_s mm/s). Gaps are bad-quality samples or no data.",
        [influxql(query, alias="$tag_signal")],
        overrides=unit_overrides(),
    )
    panel.update({"repeat": "signal", "repeatDirection": "h", "maxPerRow": 3})
    return panel


def _quality() -> Json:
    query = (
        f'SELECT max("quality") FROM "telemetry" WHERE {MACHINE} AND {SIGNALS} AND $timeFilter'
        ' GROUP BY time($__interval), "signal" fill(none)'
    )
    return state_timeline(
        "Signal quality",
        "Worst quality of each signal per interval: good, uncertain or bad (PLC unreachable, "
        "sensor fault). A bad sample has no value, so its signal panel shows a gap.",
        [influxql(query, alias="$tag_signal")],
        QUALITY_MAPPINGS,
    )


def _score() -> Json:
    query = (
        'SELECT mean("score") AS "score", mean("threshold") AS "threshold" FROM "anomaly"'
        f' WHERE {MACHINE} AND $timeFilter GROUP BY time($__interval), "detector" fill(none)'
    )
    panel = timeseries(
        "Anomaly score vs threshold",
        "The detector's anomaly score for each window of this machine's signals; above the "
        "threshold (dashed) a window is anomalous, and enough of them open an episode.",
        [influxql(query, alias="$tag_detector $col")],
    )
    panel["fieldConfig"]["overrides"] = [
        regex_override(
            "/threshold$/",
            color={"mode": "fixed", "fixedColor": "red"},
            custom__lineStyle={"fill": "dash", "dash": [10, 10]},
        )
    ]
    return panel
