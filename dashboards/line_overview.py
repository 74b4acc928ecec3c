"""Line overview, the home dashboard: the whole line at a glance.

Machines are never listed by name: every query groups by the `machine` tag, and signals are
picked by their meaning in the name (`state`, `*_total` counters, `energy_kwh`, `power_kw`), so
a plant's own line shows up without editing the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, statetimeline, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel

from core.schema import STATE_SIGNAL, TELEMETRY, EventKind
from dashboards import alarms, anomalies, downtime, events
from dashboards.influxql import (
    KPI_Q,
    LOOKBACK,
    SITE_LINE,
    STALE_S,
    TELEMETRY_Q,
    InfluxQL,
    age_query,
    rate_query,
)
from dashboards.panels import (
    MERGE,
    STATE_MAPPINGS,
    Json,
    bar_gauge,
    build_dashboard,
    organize,
    props,
    stat,
    state_band,
    table,
    time_series,
)

UID = "shopfloor-line-overview"
MACHINE_DETAIL_LINK = dash.DashboardLink("Machine detail").url(
    "/d/shopfloor-machine-detail?var-site=${site}&var-line=${line}"
    "&var-machine=${__field.labels.machine}&${__url_time_range}"
)
OUTPUT_COUNTERS = '"signal" =~ /_total$/ AND "signal" !~ /reject/'
# The state band's buckets are never shorter than the stale limit, so a change-only state
# recorded every keep-alive fills each one while the line runs, and an empty one means no data.
STATE_INTERVAL = LOOKBACK
AGE_STEPS = (("green", None), ("red", float(STALE_S)))


def build() -> Json:
    """The Line overview dashboard model."""
    return build_dashboard(
        UID,
        "Line overview",
        "States, data age, throughput, OEE, downtime, energy, PLC alarms, anomalies and faults of "
        "the whole line.",
        [
            (
                "Machines",
                [
                    (_states(), 18, 7),
                    (_data_age(), 6, 7),
                    (_throughput(), 16, 8),
                    (_produced(), 8, 8),
                ],
            ),
            ("OEE", [(_oee(), 8, 8), (_oee_factors(), 16, 8)]),
            ("Downtime", [(downtime.by_reason(), 24, 8)]),
            ("Energy", [(_energy_used(), 6, 8), (_power(), 9, 8), (_voltages(), 9, 8)]),
            (
                "PLC alarms",
                [
                    (alarms.active_counts(), 5, 7),
                    (alarms.active_alarms(), 19, 7),
                    (alarms.alarm_journal(), 24, 8),
                ],
            ),
            (
                "Anomalies and faults",
                [
                    (
                        anomalies.latest_severity(
                            "Anomaly status per machine (latest)",
                            "The newest severity of each machine (its score as a multiple of "
                            "the limit: 1 low, 2 high, 5 critical), the signal contributing "
                            "most, and how old the score is.",
                            group_by="machine",
                            sort="severity",
                        ),
                        10,
                        8,
                    ),
                    (
                        events.event_log(
                            "Injected and known faults",
                            "Fault events in the time range (ground truth from the simulator, "
                            "or faults a plant records): started or ended, with their text.",
                            kind=EventKind.FAULT,
                        ),
                        14,
                        8,
                    ),
                ],
            ),
        ],
        # Off here: every machine's faults and episodes on every chart hide the data.
        annotations=events.annotations(enabled=False),
    )


def state_query(where: str, group_by: str = "") -> str:
    """The worst (highest) state code per bucket: a short fault is never averaged away, and an
    empty bucket is null (no colour), so a dead line is not drawn as still running."""
    tags = f', "{group_by}"' if group_by else ""
    return (
        f'SELECT max("value") FROM {TELEMETRY_Q} WHERE {where} AND "signal" = \'{STATE_SIGNAL}\''
        f" AND $timeFilter GROUP BY time($__interval){tags} fill(null)"
    )


def _states() -> statetimeline.Panel:
    return state_band(
        "Machine states",
        "State of every machine over time: stopped, idle (starved or unloaded), running, "
        f"faulted. Each band segment is the worst state in its bucket (at least {LOOKBACK}), so "
        "a short fault always shows; no colour is no data (line or connector down). Click a "
        "machine for its detail dashboard.",
        InfluxQL(state_query(SITE_LINE, "machine"), alias="$tag_machine"),
        STATE_MAPPINGS,
        interval=STATE_INTERVAL,
        links=[MACHINE_DETAIL_LINK],
    )


def _data_age() -> stat_panel.Panel:
    return stat(
        "Newest sample age per machine",
        "Seconds since the newest sample of each machine (any signal or quality, to 10 s), red "
        f"past {STALE_S} s: twice the keep-alive, so even a machine whose values do not change is "
        "stale by then. A machine silent for over an hour drops out.",
        InfluxQL(age_query(TELEMETRY, "quality", SITE_LINE, "machine"), alias="$tag_machine"),
        unit="s",
        steps=AGE_STEPS,
        no_value="no data in the last hour",
    )


def _throughput() -> timeseries.Panel:
    query = rate_query(
        'last("value")',
        TELEMETRY_Q,
        f"{OUTPUT_COUNTERS} AND {SITE_LINE}",
        ("machine", "signal"),
        per="1m",
    )
    return time_series(
        "Throughput (units/min)",
        "Output rate from each machine's production counters (`*_total` signals, rejects "
        "left out), per minute. A counter reset (PLC restart) is no dip; a gap is no data for "
        f"over {STALE_S} s.",
        InfluxQL(query, alias="$tag_machine $tag_signal"),
        unit="suffix:/min",
        interval="10s",
    )


def counted_query(where: str, tags: Sequence[str]) -> str:
    """How much a counter rose in the time range, restarts included: the sum of its
    non-negative steps (a restart's drop to zero is no step; spread() would undercount)."""
    group = ", ".join(f'"{tag}"' for tag in tags)
    inner = (
        f'SELECT non_negative_difference("value") AS "rise" FROM {TELEMETRY_Q}'
        f" WHERE {where} AND {SITE_LINE} AND $timeFilter GROUP BY {group}"
    )
    return f'SELECT sum("rise") FROM ({inner}) GROUP BY {group}'


def _produced() -> stat_panel.Panel:
    return stat(
        "Produced in the time range",
        "How much each counter rose in the selected time range (good and rejected units), "
        "summed over its steps, so a counter that restarted (PLC or line restart) still counts "
        "everything.",
        InfluxQL(
            counted_query('"signal" =~ /_total$/', ("machine", "signal")),
            alias="$tag_machine $tag_signal",
        ),
        unit="short",
        decimals=0,
    )


def _oee() -> bargauge.Panel:
    query = f'SELECT last("oee") FROM {KPI_Q} WHERE {SITE_LINE} AND $timeFilter GROUP BY "machine"'
    return bar_gauge(
        "OEE per machine (latest)",
        "Overall equipment effectiveness (availability x performance x quality) of the last "
        "KPI interval, for machines with a production counter: red below 60 %, yellow to "
        "85 %, green above.",
        InfluxQL(query, alias="$tag_machine"),
        unit="percentunit",
        steps=(("red", None), ("yellow", 0.6), ("green", 0.85)),
    )


def _oee_factors() -> table_panel.Panel:
    query = (
        'SELECT last("availability") AS "availability", last("performance") AS "performance",'
        f' last("quality") AS "quality", last("oee") AS "oee",'
        ' last("planned_loss") AS "planned loss", last("unplanned_loss") AS "unplanned loss"'
        f' FROM {KPI_Q} WHERE {SITE_LINE} AND $timeFilter GROUP BY "machine"'
    )
    panel = table(
        "OEE factors per machine (latest)",
        "Availability = running time / planned (not stopped) time; performance = output / "
        "(ideal rate x running time); quality = good / total output. Machines without a "
        "counter have availability only. Planned and unplanned loss split what availability "
        "lost by the stops' reason codes (planned: cleaning, changeover, maintenance, no "
        "demand); the three add up to 100 %.",
        InfluxQL(query, table=True),
        [MERGE, organize(hide=["Time"])],
    )
    for name in ("availability", "performance", "quality", "oee", "planned loss", "unplanned loss"):
        panel.override_by_name(name, props(unit="percentunit", decimals=1))
    return panel


def _energy_used() -> stat_panel.Panel:
    return stat(
        "Energy used in the time range",
        "Rise of each energy meter's kWh counter over the selected time range, summed over its "
        "steps (a meter restart still counts everything).",
        InfluxQL(counted_query("\"signal\" = 'energy_kwh'", ("machine",)), alias="$tag_machine"),
        unit="kwatth",
        decimals=2,
    )


def _power() -> timeseries.Panel:
    query = (
        f'SELECT mean("value") FROM {TELEMETRY_Q} WHERE "signal" = \'power_kw\''
        f' AND {SITE_LINE} AND $timeFilter GROUP BY time($__interval), "machine" fill(null)'
    )
    return time_series(
        "Power (kW)",
        "Active power of every machine that measures it; the energy meter's is the whole "
        f"line feeder. A gap is no data for over {STALE_S} s.",
        InfluxQL(query, alias="$tag_machine"),
        unit="kwatt",
    )


def _voltages() -> timeseries.Panel:
    query = (
        f'SELECT min("value") FROM {TELEMETRY_Q} WHERE "signal" =~ /^voltage_l[0-9]_v$/'
        f" AND {SITE_LINE} AND $timeFilter"
        ' GROUP BY time($__interval), "machine", "signal" fill(null)'
    )
    return time_series(
        "Supply voltage per phase (V, lowest per interval)",
        "Phase voltages at the energy meter, the lowest of each interval so a short sag "
        "shows at any time range. A gap is no data for over "
        f"{STALE_S} s.",
        InfluxQL(query, alias="$tag_machine $tag_signal"),
        unit="volt",
    )
