"""Line overview, the home dashboard: the whole line at a glance.

Machines are never listed by name: every query groups by the `machine` tag, and signals are
picked by their meaning in the name (`state`, `*_total` counters, `energy_kwh`, `power_kw`), so
a plant's own line shows up without editing the dashboard.
"""

from __future__ import annotations

from dashboards import anomalies, events
from dashboards.grafana import (
    MERGE,
    STATE_MAPPINGS,
    Json,
    Layout,
    bar_gauge,
    dashboard,
    influxql,
    organize,
    override,
    stat,
    state_timeline,
    table,
    timeseries,
)

UID = "shopfloor-line-overview"
MACHINE_DETAIL_LINK: Json = {
    "title": "Machine detail",
    "url": "/d/shopfloor-machine-detail?var-machine=${__field.labels.machine}&${__url_time_range}",
}
OUTPUT_COUNTERS = '"signal" =~ /_total$/ AND "signal" !~ /reject/'


def build() -> Json:
    """The Line overview dashboard model."""
    layout = Layout()
    layout.row("Machines")
    layout.add(_states(), 24, 7)
    layout.add(_throughput(), 16, 8)
    layout.add(_produced(), 8, 8)
    layout.row("OEE")
    layout.add(_oee(), 8, 8)
    layout.add(_oee_factors(), 16, 8)
    layout.row("Energy")
    layout.add(_energy_used(), 6, 8)
    layout.add(_power(), 9, 8)
    layout.add(_voltages(), 9, 8)
    layout.row("Anomalies and faults")
    layout.add(
        anomalies.latest_scores(
            "Anomaly status per machine (latest)",
            "The newest anomaly score of each machine against its threshold; 'anomalous' is "
            "red while the score is above it, and the top signal is the one contributing most.",
            group_by="machine",
            order=["machine", "is_anomaly", "top_signal"],
            sort_by="score",
        ),
        12,
        8,
    )
    layout.add(
        events.event_log(
            "Injected and known faults",
            "Fault events in the time range (ground truth from the simulator, or faults a "
            "plant records): started or ended, with their text.",
            kind="fault",
        ),
        12,
        8,
    )
    return dashboard(
        UID,
        "Line overview",
        "States, throughput, OEE, energy, anomalies and faults of the whole line.",
        layout,
        annotations=events.annotations(),
    )


def _states() -> Json:
    query = (
        'SELECT last("value") FROM "telemetry" WHERE "signal" = \'state\' AND $timeFilter'
        ' GROUP BY time($__interval), "machine" fill(previous)'
    )
    return state_timeline(
        "Machine states",
        "State of every machine over time: stopped, idle (starved or unloaded), running, "
        "faulted. Click a machine for its detail dashboard.",
        [influxql(query, alias="$tag_machine")],
        STATE_MAPPINGS,
        links=[MACHINE_DETAIL_LINK],
    )


def _throughput() -> Json:
    query = (
        'SELECT non_negative_derivative(last("value"), 1m) FROM "telemetry"'
        f" WHERE {OUTPUT_COUNTERS} AND $timeFilter"
        ' GROUP BY time($__interval), "machine", "signal" fill(none)'
    )
    return timeseries(
        "Throughput (units/min)",
        "Output rate from each machine's production counters (`*_total` signals, rejects "
        "left out), per minute. A counter reset (PLC restart) shows as a gap, not a dip.",
        [influxql(query, alias="$tag_machine $tag_signal")],
        unit="suffix: /min",
        interval="10s",
    )


def _produced() -> Json:
    query = (
        'SELECT spread("value") FROM "telemetry" WHERE "signal" =~ /_total$/ AND $timeFilter'
        ' GROUP BY "machine", "signal"'
    )
    return stat(
        "Produced in the time range",
        "How much each counter rose in the selected time range (good and rejected units).",
        [influxql(query, alias="$tag_machine $tag_signal")],
        unit="short",
        decimals=0,
    )


def _oee() -> Json:
    query = 'SELECT last("oee") FROM "kpi" WHERE $timeFilter GROUP BY "machine"'
    return bar_gauge(
        "OEE per machine (latest)",
        "Overall equipment effectiveness (availability x performance x quality) of the last "
        "KPI interval, for machines with a production counter.",
        [influxql(query, alias="$tag_machine")],
        unit="percentunit",
    )


def _oee_factors() -> Json:
    query = (
        'SELECT last("availability") AS "availability", last("performance") AS "performance",'
        ' last("quality") AS "quality", last("oee") AS "oee" FROM "kpi" WHERE $timeFilter'
        ' GROUP BY "machine"'
    )
    percent = {"unit": "percentunit", "decimals": 1}
    return table(
        "OEE factors per machine (latest)",
        "Availability = running time / planned (not stopped) time; performance = output / "
        "(ideal rate x running time); quality = good / total output. Machines without a "
        "counter have availability only.",
        [influxql(query, table=True)],
        transformations=[MERGE, organize(hide=["Time"])],
        overrides=[
            override(name, **percent) for name in ("availability", "performance", "quality", "oee")
        ],
    )


def _energy_used() -> Json:
    query = (
        'SELECT spread("value") FROM "telemetry" WHERE "signal" = \'energy_kwh\' AND $timeFilter'
        ' GROUP BY "machine"'
    )
    return stat(
        "Energy used in the time range",
        "Rise of each energy meter's kWh counter over the selected time range.",
        [influxql(query, alias="$tag_machine")],
        unit="kwatth",
        decimals=1,
    )


def _power() -> Json:
    query = (
        'SELECT mean("value") FROM "telemetry" WHERE "signal" = \'power_kw\' AND $timeFilter'
        ' GROUP BY time($__interval), "machine" fill(none)'
    )
    return timeseries(
        "Power (kW)",
        "Active power of every machine that measures it; the energy meter's is the whole "
        "line feeder.",
        [influxql(query, alias="$tag_machine")],
        unit="kwatt",
    )


def _voltages() -> Json:
    query = (
        'SELECT mean("value") FROM "telemetry" WHERE "signal" =~ /^voltage_l[0-9]_v$/'
        ' AND $timeFilter GROUP BY time($__interval), "machine", "signal" fill(none)'
    )
    return timeseries(
        "Supply voltage per phase (V)",
        "Phase voltages at the energy meter: a voltage sag shows here first.",
        [influxql(query, alias="$tag_machine $tag_signal")],
        unit="volt",
    )
