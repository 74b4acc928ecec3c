"""InfluxQL for Grafana's InfluxDB datasource: query targets, annotation targets, variables and
the query shapes every dashboard shares (site/line filters, look-back, the age of the newest
sample).

The SDK build for Grafana 11.6 has no InfluxDB query type, so the target is a small Dataquery
of the SDK's own kind; everything around it (panels, variables, annotations) is the SDK's.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

from core.schema import ANOMALY, CONNECTOR, EVENTS, KEEP_ALIVE_S, KPI, TELEMETRY, Measurement

DATASOURCE_UID = (
    "shopfloor-influxdb"  # the uid of dashboards/provisioning/datasources/influxdb.yaml
)
DATASOURCE = model.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)

STALE_S = int(2 * KEEP_ALIVE_S)  # see core.schema.KEEP_ALIVE_S
LOOKBACK = f"{STALE_S}s"
CONNECTOR_REPORT_S = 10  # delivery.agent reports health every 10 s
CONNECTOR_STALE_S = 3 * CONNECTOR_REPORT_S


def quoted(measurement: Measurement) -> str:
    """A measurement's name as an InfluxQL identifier: the schema's name, never spelled here."""
    return f'"{measurement.name}"'


TELEMETRY_Q, ANOMALY_Q, EVENTS_Q, CONNECTOR_Q, KPI_Q = map(
    quoted, (TELEMETRY, ANOMALY, EVENTS, CONNECTOR, KPI)
)

# Every query on a measurement with site and line tags is narrowed to the chosen site and line,
# so two lines in one database never merge their same-named machines.
SITE_LINE = '"site" =~ /^$site$/ AND "line" =~ /^$line$/'
# The newest value up to the end of the time range, if it is younger than STALE_S.
LATEST = f"time > ${{__to}}ms - {LOOKBACK} AND time <= ${{__to}}ms"


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target as Grafana's InfluxDB datasource stores it."""

    def __init__(self, query: str, ref_id: str, alias: str, table: bool) -> None:
        self.query, self.ref_id, self.alias, self.table = query, ref_id, alias, table

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": "table" if self.table else "time_series",
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds an InfluxQLQuery; `alias` may use $tag_<key> and $col as Grafana expands them."""

    def __init__(self, query: str, *, ref: str = "A", alias: str = "", table: bool = False):
        self._internal = InfluxQLQuery(query, ref, alias, table)

    def build(self) -> InfluxQLQuery:
        return self._internal


class InfluxQLAnnotationTarget(model.AnnotationTarget):
    """The `target` of an InfluxDB annotation in its current form (query, rawQuery and the
    columns that give the text and tags); the older top-level `query` is not run."""

    def __init__(self, query: str, *, text: str, tags: str) -> None:
        super().__init__()
        self.query, self.text, self.tags_column = query, text, tags

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "resultFormat": "table",
            "fromAnnotations": True,
            "textColumn": self.text,
            "tagsColumn": self.tags_column,
            "titleColumn": "",
            "timeEndColumn": "",
        }


class _Target(cogbuilder.Builder[model.AnnotationTarget]):
    def __init__(self, target: InfluxQLAnnotationTarget) -> None:
        self._internal = target

    def build(self) -> InfluxQLAnnotationTarget:
        return self._internal


def annotation(name: str, color: str, query: str, *, enabled: bool = True) -> dash.AnnotationQuery:
    """Events as annotations: the `text` field is the text, the machine tag the tag; a
    disabled one is a toggle that starts off."""
    target = InfluxQLAnnotationTarget(query, text="text", tags="machine")
    return (
        dash.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(enabled)
        .icon_color(color)
        .target(_Target(target))
    )


def query_variable(
    name: str, label: str, query: str, *, multi: bool = False, hide: bool = False
) -> dash.QueryVariable:
    """A variable whose values come from the historian (refreshed when the time range changes);
    a multi-value one offers All."""
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if hide:
        variable.hide(model.VariableHide.HIDE_VARIABLE)
    return variable


def site_line_variables(*, hide: bool = False) -> list[dash.QueryVariable]:
    """$site and $line (one of each: machines are only unique within a line), from the
    historian's telemetry; hidden ones only carry the choice through dashboard links."""
    return [
        query_variable(
            "site", "Site", f'SHOW TAG VALUES FROM {TELEMETRY_Q} WITH KEY = "site"', hide=hide
        ),
        query_variable(
            "line",
            "Line",
            f'SHOW TAG VALUES FROM {TELEMETRY_Q} WITH KEY = "line" WHERE "site" =~ /^$site$/',
            hide=hide,
        ),
    ]


def age_query(
    measurement: Measurement, field: str, where: str, tag: str, bucket_s: int = 10
) -> str:
    """Seconds since the newest `field` point of each `tag` value (to `bucket_s`, over the last
    hour, however old the time range): InfluxQL cannot subtract a timestamp from now(), so it
    counts the empty buckets after the last one with data. Nothing in the hour: no row."""
    group = f'"{tag}"'
    newest_first = f"GROUP BY {group} ORDER BY time DESC"
    counts = (
        f'SELECT count("{field}") AS "n" FROM {quoted(measurement)}'
        f" WHERE {where} AND time > now() - 1h"
        f" GROUP BY time({bucket_s}s), {group} fill(0)"
    )
    seen = f'SELECT cumulative_sum("n") AS "seen" FROM ({counts}) {newest_first}'
    empty = f'SELECT floor(1 / (1 + "seen")) AS "empty" FROM ({seen}) {newest_first}'
    return f'SELECT sum("empty") * {bucket_s} AS "age_s" FROM ({empty}) {newest_first}'


def rate_query(select: str, measurement: str, where: str, tags: Sequence[str], per: str) -> str:
    """The non-negative rate of a counter per `per` and interval, an empty interval null: the
    derivative alone returns no row for an empty interval, so an outage would be drawn as a
    straight line; the outer query's fill(null) brings the empty intervals back."""
    group = ", ".join(f'"{tag}"' for tag in tags)
    inner = (
        f'SELECT non_negative_derivative({select}, {per}) AS "rate" FROM {measurement}'
        f" WHERE {where} AND $timeFilter GROUP BY time($__interval), {group}"
    )
    return (
        f'SELECT mean("rate") FROM ({inner}) WHERE $timeFilter'
        f" GROUP BY time($__interval), {group} fill(null)"
    )
