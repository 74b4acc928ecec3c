"""Connectors health: is every connector delivering, how fast, and is data piling up or lost.

Each connector reports one `connector` point every 10 s with cumulative counters, so rates are
non-negative derivatives (a restart resets a counter without a negative spike).
"""

from __future__ import annotations

from dashboards.grafana import (
    MERGE,
    Json,
    Layout,
    dashboard,
    influxql,
    organize,
    override,
    query_variable,
    stat,
    table,
    timeseries,
    value_mappings,
)

UID = "shopfloor-connectors"
CONNECTORS = '"connector" =~ /^$connector$/'
REPORT_INTERVAL = "10s"  # connectors.agent reports health every 10 s
CONNECTED_MAPPINGS = value_mappings(
    ("true", "connected", "green"), ("false", "disconnected", "red")
)


def build() -> Json:
    """The Connectors health dashboard model."""
    layout = Layout()
    layout.row("Status")
    layout.add(_connected(), 8, 5)
    layout.add(_overview(), 16, 5)
    layout.row("Delivery")
    layout.add(_series(_rate("samples"), "Samples/s", "Tag values delivered per second."), 12, 8)
    layout.add(
        _series(
            'mean("latency_ms")',
            "Latency (ms)",
            "Round trip of the last read (Modbus) or keep-alive read (OPC UA).",
            unit="ms",
        ),
        12,
        8,
    )
    layout.add(
        _series(
            _rate("errors"),
            "Errors/s",
            "Read errors, timeouts and rejected requests per second; any is worth a look.",
        ),
        12,
        7,
    )
    layout.add(
        _series(
            _rate("reconnects"),
            "Reconnects/s",
            "Connection losses followed by a new session (exponential backoff between tries).",
        ),
        12,
        7,
    )
    layout.row("Spool")
    layout.add(
        _series(
            'max("spool_bytes")',
            "Spool depth (bytes)",
            "Data on disk not yet acknowledged by the historian. It grows while the historian "
            "is unreachable and drains when it is back; steady growth means the historian is "
            "too slow.",
            unit="bytes",
        ),
        12,
        7,
    )
    layout.add(
        _series(
            'last("spool_dropped")',
            "Samples dropped from a full spool",
            "Samples dropped because the spool reached --spool-max, counted since the spool "
            "was created. Anything above zero is data lost: raise --spool-max or fix the "
            "historian.",
            unit="short",
            threshold_line=1.0,
        ),
        12,
        7,
    )
    return dashboard(
        UID,
        "Connectors health",
        "Connected, samples/s, errors, reconnects, latency and spool of every connector.",
        layout,
        variables=[
            query_variable(
                "connector",
                "Connector",
                'SHOW TAG VALUES FROM "connector" WITH KEY = "connector"',
                multi=True,
            )
        ],
        time_from="now-1h",
    )


def _connected() -> Json:
    query = (
        f'SELECT last("connected") FROM "connector" WHERE {CONNECTORS} AND $timeFilter'
        ' GROUP BY "connector"'
    )
    return stat(
        "Connected",
        "Whether each connector has a session with its PLC now (from its last report).",
        [influxql(query, alias="$tag_connector")],
        mappings=CONNECTED_MAPPINGS,
    )


def _overview() -> Json:
    query = (
        'SELECT last("samples") AS "samples", "errors", "reconnects", "latency_ms",'
        f' "spool_bytes" FROM "connector" WHERE {CONNECTORS} AND $timeFilter'
        ' GROUP BY "connector", "endpoint"'
    )
    return table(
        "Connectors (latest report)",
        "Endpoint and cumulative counters since each connector started.",
        [influxql(query, table=True)],
        transformations=[
            MERGE,
            organize(rename={"Time": "reported"}),
        ],
        overrides=[
            override("latency_ms", unit="ms", decimals=1),
            override("spool_bytes", unit="bytes"),
        ],
    )


def _rate(field: str) -> str:
    """Per second from a cumulative counter; a restart's reset is no negative spike."""
    return f'non_negative_derivative(last("{field}"), 1s)'


def _series(
    select: str,
    title: str,
    description: str,
    *,
    unit: str = "cps",
    threshold_line: float | None = None,
) -> Json:
    """One line per connector of `select` over the `connector` reports, at their interval."""
    query = (
        f'SELECT {select} FROM "connector" WHERE {CONNECTORS} AND $timeFilter'
        ' GROUP BY time($__interval), "connector" fill(none)'
    )
    return timeseries(
        title,
        description,
        [influxql(query, alias="$tag_connector")],
        unit=unit,
        interval=REPORT_INTERVAL,
        threshold_line=threshold_line,
    )
