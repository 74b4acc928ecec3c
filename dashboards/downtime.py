"""The downtime Pareto panel: the line's stops (`events` of kind stop, analytics.downtime) in the
time range, grouped by reason, most lost time first.

A stop's reason and category are fields (the `events` tags are the same for every kind), and
InfluxQL groups only by tags: the query returns one row per closed stop and Grafana's groupBy
transformation sums them per reason, as `shopfloor downtime` does.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.models import dashboard as model

from core.schema import EventKind
from dashboards.influxql import EVENTS_Q, SITE_LINE, InfluxQL
from dashboards.panels import MERGE, organize, props, sort_by, table

STOPS = f"\"kind\" = '{EventKind.STOP}'"
LOST, COUNT = "lost", "stops"


def _group_by_reason() -> model.DataTransformerConfig:
    return model.DataTransformerConfig(
        id_val="groupBy",
        options={
            "fields": {
                "reason": {"operation": "groupby", "aggregations": []},
                "category": {"operation": "groupby", "aggregations": []},
                "duration_s": {"operation": "aggregate", "aggregations": ["sum", "count"]},
            }
        },
    )


def by_reason() -> table_panel.Panel:
    """One row per reason: category, stops, lost time; most lost time first."""
    query = (
        f'SELECT "reason", "category", "duration_s" FROM {EVENTS_Q}'
        f' WHERE {STOPS} AND "active" = false AND {SITE_LINE} AND $timeFilter GROUP BY "machine"'
    )
    transformations = [
        MERGE,
        _group_by_reason(),
        organize(
            order=["reason", "category", "duration_s (sum)", "duration_s (count)"],
            rename={"duration_s (sum)": LOST, "duration_s (count)": COUNT},
        ),
        sort_by(LOST),
    ]
    return table(
        "Downtime by reason",
        "The machines' stops (idle or faulted) that ended in the time range, by reason, most "
        "lost time first: a Pareto. The reason comes from the machine's PLC reason code; "
        "planned stops (cleaning, changeover, maintenance, no demand) apart from unplanned "
        "ones. Labels of stops without a PLC reason and micro-stops: `shopfloor downtime`.",
        InfluxQL(query, table=True),
        transformations,
        sort=LOST,
    ).override_by_name(LOST, props(unit="s", decimals=0))
