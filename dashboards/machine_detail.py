"""Machine detail: every signal of one machine with its unit, its anomaly severity (the score
as a multiple of the limit), and its fault and anomaly events as annotations.

`$site`, `$line`, `$machine` and `$signal` are read from the historian (SHOW TAG VALUES), so the
machines and signals of whatever line writes there appear without editing the dashboard.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import statetimeline, timeseries
from grafana_foundation_sdk.builders import table as table_panel

from core.schema import STATE_SIGNAL
from dashboards import alarms, anomalies, events, line_overview
from dashboards.influxql import (
    LATEST,
    LOOKBACK,
    SITE_LINE,
    STALE_S,
    TELEMETRY_Q,
    InfluxQL,
    query_variable,
)
from dashboards.panels import (
    ALARM_MAPPINGS,
    MERGE,
    QUALITY_MAPPINGS,
    STATE_MAPPINGS,
    Json,
    build_dashboard,
    organize,
    props,
    stat,
    state_band,
    table,
    time_series,
    with_unit_overrides,
)

UID = "shopfloor-machine-detail"
MACHINE = f'{SITE_LINE} AND "machine" =~ /^$machine$/'
SIGNALS = '"signal" =~ /^$signal$/'
ALARM_PREFIX = "alarm_"  # PLC alarm bits (plc_sim's alarm_overload, alarm_overtemp, ...)


def build() -> Json:
    """The Machine detail dashboard model."""
    return build_dashboard(
        UID,
        "Machine detail",
        "Every signal of one machine, its PLC alarms, its anomaly severity, its events.",
        [
            (
                "State and latest values",
                [(_state(), 24, 4), (_latest(), 24, 5), (_texts(), 24, 5)],
            ),
            (
                "PLC alarms",
                [
                    (alarms.active_alarms("$machine"), 24, 6),
                    (alarms.alarm_journal("$machine"), 24, 7),
                ],
            ),
            ("Signal quality", [(_quality(), 24, 8)]),
            ("Signals", [(_signal(), 8, 7)]),
            (
                "Anomaly detection",
                [
                    (_severity(), 14, 8),
                    (
                        anomalies.latest_severity(
                            "Latest severity and top signal",
                            "The newest severity (the score as a multiple of the limit, "
                            "coloured by level), which signal contributed most (where to look "
                            "first) and how old it is.",
                            group_by="detector",
                            machine_regex="$machine",
                        ),
                        10,
                        8,
                    ),
                    (
                        events.event_log(
                            "Events of this machine",
                            "Injected faults and anomaly episodes of this machine in the time "
                            "range.",
                            machine_regex="$machine",
                        ),
                        24,
                        7,
                    ),
                ],
            ),
        ],
        variables=[
            query_variable(
                "machine",
                "Machine",
                f'SHOW TAG VALUES FROM {TELEMETRY_Q} WITH KEY = "machine" WHERE {SITE_LINE}',
            ),
            query_variable(
                "signal",
                "Signal",
                f'SHOW TAG VALUES FROM {TELEMETRY_Q} WITH KEY = "signal" WHERE {MACHINE}',
                multi=True,
            ),
        ],
        annotations=events.annotations("$machine"),
    )


def _state() -> statetimeline.Panel:
    return state_band(
        "State",
        f"Stopped, idle, running or faulted over time: the worst state of each bucket (at least "
        f"{LOOKBACK}), so a short fault always shows; no colour is no data.",
        InfluxQL(line_overview.state_query(MACHINE), alias="state"),
        STATE_MAPPINGS,
        interval=line_overview.STATE_INTERVAL,
    )


def _latest() -> stat_panel.Panel:
    query = (
        f'SELECT last("value") FROM {TELEMETRY_Q} WHERE {MACHINE} AND {SIGNALS} AND {LATEST}'
        ' GROUP BY "signal"'
    )
    panel = stat(
        "Latest values",
        "The newest good value of each selected signal, in the unit its name carries, if it is "
        f"at most {STALE_S} s older than the end of the time range (twice the keep-alive of a "
        "value that does not change); a signal with nothing newer is missing here: stale.",
        InfluxQL(query, alias="$tag_signal"),
        no_value=f"no data in the last {STALE_S} s",
    )
    with_unit_overrides(panel)
    return panel.override_by_name(STATE_SIGNAL, props(mappings=STATE_MAPPINGS)).override_by_regexp(
        f"/^{ALARM_PREFIX}/", props(mappings=ALARM_MAPPINGS)
    )


def _texts() -> table_panel.Panel:
    query = (
        f'SELECT last("text") AS "text" FROM {TELEMETRY_Q} WHERE {MACHINE} AND {SIGNALS}'
        ' AND $timeFilter GROUP BY "signal"'
    )
    return table(
        "Latest texts",
        "The newest text of each signal that has one in the time range: a batch id, a recipe or "
        "operator name, an alarm text, a DateTime, an enumeration's name (docs/data-model.md, "
        "Values), with the time the PLC stamped it.",
        InfluxQL(query, table=True),
        [MERGE, organize(order=["signal", "text", "Time"])],
    )


def _signal() -> timeseries.Panel:
    query = (
        f'SELECT mean("value") FROM {TELEMETRY_Q} WHERE {MACHINE} AND {SIGNALS} AND $timeFilter'
        ' GROUP BY time($__interval), "signal" fill(null)'
    )
    panel = time_series(
        "$signal",
        "One panel per signal (repeated for each value of $signal), in the unit its name "
        "carries (e.g. _c °C, _a A, _mm_s mm/s). A gap is no good sample for over "
        f"{STALE_S} s (no data, or bad quality); shorter pauses of a value that does not "
        "change are bridged.",
        InfluxQL(query, alias="$tag_signal"),
    )
    with_unit_overrides(panel)
    return panel.repeat("signal").repeat_direction("h").max_per_row(3)


def _quality() -> statetimeline.Panel:
    query = (
        f'SELECT max("quality") FROM {TELEMETRY_Q} WHERE {MACHINE} AND {SIGNALS} AND $timeFilter'
        ' GROUP BY time($__interval), "signal" fill(null)'
    )
    return state_band(
        "Signal quality",
        "Worst quality of each signal per bucket (at least "
        f"{LOOKBACK}): good, uncertain or bad (PLC unreachable, sensor fault); no colour is no "
        "data. A bad sample has no value, so its signal panel shows a gap.",
        InfluxQL(query, alias="$tag_signal"),
        QUALITY_MAPPINGS,
        interval=line_overview.STATE_INTERVAL,
    )


def _severity() -> timeseries.Panel:
    return anomalies.severity_series(
        "Anomaly severity",
        f"The detector's {anomalies.SEVERITY_DESCRIPTION} Enough anomalous windows open an "
        "episode.",
        InfluxQL(anomalies.severity_query(MACHINE, "detector"), alias="$tag_detector"),
    )
