"""Connectors health: is every connector delivering, how fast, and is data piling up or lost.

Each connector reports one `connector` point every 10 s with cumulative counters, so rates are
non-negative derivatives (a restart resets a counter without a negative spike). The
`connector` measurement has no site or line tags: this dashboard filters by connector only.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import timeseries

from core.schema import CONNECTOR
from dashboards.influxql import (
    CONNECTOR_Q,
    CONNECTOR_REPORT_S,
    CONNECTOR_STALE_S,
    InfluxQL,
    age_query,
    query_variable,
    rate_query,
)
from dashboards.panels import (
    MERGE,
    Json,
    build_dashboard,
    organize,
    props,
    stat,
    table,
    time_series,
    value_mappings,
)

UID = "shopfloor-connectors"
CONNECTORS = '"connector" =~ /^$connector$/'
REPORT_INTERVAL = f"{CONNECTOR_REPORT_S}s"
CONNECTED_MAPPINGS = value_mappings(
    ("true", "connected", "green"), ("false", "disconnected", "red")
)
# A report younger than this is the connector's current word; an older one says nothing now.
RECENT = f"time > ${{__to}}ms - {CONNECTOR_STALE_S}s AND time <= ${{__to}}ms"


def build() -> Json:
    """The Connectors health dashboard model."""
    return build_dashboard(
        UID,
        "Connectors health",
        "Connected, report age, samples/s, errors, reconnects, latency and spool of every "
        "connector.",
        [
            ("Status", [(_connected(), 12, 5), (_report_age(), 12, 5), (_overview(), 24, 5)]),
            (
                "Delivery",
                [
                    (
                        _series(
                            _rate("samples"),
                            "Samples/s",
                            "Tag values delivered per second.",
                            rate=True,
                        ),
                        12,
                        8,
                    ),
                    (
                        _series(
                            'mean("latency_ms")',
                            "Latency (ms)",
                            "Round trip of the last read (Modbus) or keep-alive read (OPC UA).",
                            unit="ms",
                        ),
                        12,
                        8,
                    ),
                    (
                        _series(
                            _rate("errors"),
                            "Errors/s",
                            "Read errors, timeouts and rejected requests per second; any is "
                            "worth a look.",
                            rate=True,
                            soft_max=1.0,
                        ),
                        12,
                        7,
                    ),
                    (
                        _series(
                            _rate("reconnects"),
                            "Reconnects/s",
                            "Connection losses followed by a new session (exponential backoff "
                            "between tries).",
                            rate=True,
                            soft_max=1.0,
                        ),
                        12,
                        7,
                    ),
                ],
            ),
            (
                "Spool",
                [
                    (
                        _series(
                            'max("spool_bytes")',
                            "Spool depth (bytes)",
                            "Data on disk not yet acknowledged by the historian. It grows "
                            "while the historian is unreachable and drains when it is back; "
                            "steady growth means the historian is too slow.",
                            unit="bytes",
                        ),
                        12,
                        7,
                    ),
                    (
                        _series(
                            'last("spool_dropped")',
                            "Samples lost in the spool",
                            "Samples dropped because the spool reached --spool-max, plus "
                            "samples in records that failed their checksum (moved to "
                            "spool/quarantine/), counted since the spool was created. Anything "
                            "above zero is data lost: raise --spool-max or fix the historian; "
                            "for checksum failures check the disk.",
                            unit="short",
                            threshold_line=1.0,
                        ),
                        12,
                        7,
                    ),
                ],
            ),
        ],
        variables=[
            query_variable(
                "connector",
                "Connector",
                f'SHOW TAG VALUES FROM {CONNECTOR_Q} WITH KEY = "connector"',
                multi=True,
            )
        ],
        site_line=False,
    )


def _connected() -> stat_panel.Panel:
    query = (
        f'SELECT last("connected") FROM {CONNECTOR_Q} WHERE {CONNECTORS} AND {RECENT}'
        ' GROUP BY "connector"'
    )
    return stat(
        "Connected",
        "Whether each connector has a session with its PLC, from its last report if that is "
        f"at most {CONNECTOR_STALE_S} s older than the end of the time range; a connector "
        "that stopped reporting is missing here (see the report age).",
        InfluxQL(query, alias="$tag_connector"),
        mappings=CONNECTED_MAPPINGS,
        no_value="no report",
    )


def _report_age() -> stat_panel.Panel:
    return stat(
        "Report age",
        "Seconds since each connector's newest report (to 10 s), red past "
        f"{CONNECTOR_STALE_S} s (three report intervals): the connector or its process is "
        "down. One silent for over an hour drops out.",
        InfluxQL(age_query(CONNECTOR, "samples", CONNECTORS, "connector"), alias="$tag_connector"),
        unit="s",
        steps=(("green", None), ("red", float(CONNECTOR_STALE_S))),
        no_value="no report in the last hour",
    )


def _overview() -> table_panel.Panel:
    query = (
        'SELECT last("samples") AS "samples", "errors", "reconnects", "latency_ms",'
        f' "spool_bytes" FROM {CONNECTOR_Q} WHERE {CONNECTORS} AND $timeFilter'
        ' GROUP BY "connector", "endpoint"'
    )
    return (
        table(
            "Connectors (latest report)",
            "Endpoint and cumulative counters since each connector started; 'reported' says "
            "how old the report is.",
            InfluxQL(query, table=True),
            [MERGE, organize(rename={"Time": "reported"})],
        )
        .override_by_name("endpoint", props(custom__minWidth=320))
        .override_by_name("latency_ms", props(unit="ms", decimals=1))
        .override_by_name("spool_bytes", props(unit="bytes"))
        .override_by_name("reported", props(unit="dateTimeFromNow"))
    )


def _rate(field: str) -> str:
    """The newest report of a cumulative counter per interval, for rate_query."""
    return f'last("{field}")'


def _series(
    select: str,
    title: str,
    description: str,
    *,
    unit: str = "cps",
    rate: bool = False,
    threshold_line: float | None = None,
    soft_max: float | None = None,
) -> timeseries.Panel:
    """One line per connector of `select` over the `connector` reports, at their interval;
    `rate`: per second of a cumulative counter (a restart's reset is no negative spike)."""
    if rate:
        query = rate_query(select, CONNECTOR_Q, CONNECTORS, ("connector",), per="1s")
    else:
        query = (
            f"SELECT {select} FROM {CONNECTOR_Q} WHERE {CONNECTORS} AND $timeFilter"
            ' GROUP BY time($__interval), "connector" fill(null)'
        )
    return time_series(
        title,
        f"{description} A gap is no report for over {CONNECTOR_STALE_S} s.",
        InfluxQL(query, alias="$tag_connector"),
        unit=unit,
        bridge_s=CONNECTOR_STALE_S,
        interval=REPORT_INTERVAL,
        threshold_line=threshold_line,
        soft_max=soft_max,
    )
