"""The panel kinds the Shopfloor dashboards use, on Grafana's typed SDK, with the choices that
keep them truthful made once: stats keep every field type the query returns (booleans too),
bar gauges colour by their thresholds, time series only bridge gaps shorter than a stale
signal, and value mappings come from the codes in core.schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, common, statetimeline, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from core.sample import Quality
from core.schema import MachineState
from core.severity import LEVEL_FLOORS, SEVERITY_CAP, SeverityLevel
from core.units import SUFFIXES
from dashboards.influxql import DATASOURCE, STALE_S, InfluxQL, site_line_variables

Json = dict[str, object]
P = TypeVar(
    "P", timeseries.Panel, statetimeline.Panel, stat_panel.Panel, bargauge.Panel, table_panel.Panel
)
Step = tuple[str, float | None]
TAG = "shopfloor"
# Grey on both themes: Grafana's "text" is near-white on the dark one, brighter than running.
GREY = "#8e8e8e"
STATE_COLORS = {
    MachineState.STOPPED: GREY,
    MachineState.IDLE: "yellow",
    MachineState.RUNNING: "green",
    MachineState.FAULTED: "red",
}
QUALITY_COLORS = {Quality.GOOD: "green", Quality.UNCERTAIN: "yellow", Quality.BAD: "red"}
# A stat's fields, matched on their display names: every field whatever its type (booleans,
# strings), not only numbers as "" would; but not the Time field, which would be a tile too.
ALL_FIELDS = "/^(?!Time$)/"
MERGE = model.DataTransformerConfig(id_val="merge", options={})  # one table from a GROUP BY


def value_mappings(*values: tuple[str, str, str]) -> list[model.ValueMapping]:
    """One value mapping from (value, text, color) triples, in the order Grafana lists them."""
    options = {
        value: model.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, text, color) in enumerate(values)
    }
    return [model.ValueMap(options=options)]


STATE_MAPPINGS = value_mappings(
    *((str(state.value), state.name.lower(), STATE_COLORS[state]) for state in MachineState)
)
QUALITY_MAPPINGS = value_mappings(
    *((str(q.value), q.name.lower(), QUALITY_COLORS[q]) for q in Quality)
)
FLAG_MAPPINGS = value_mappings(("true", "yes", "red"), ("false", "no", "green"))
# A PLC alarm bit (0/1, or a boolean) in words.
ALARM_MAPPINGS = value_mappings(
    ("0", "ok", "green"), ("1", "ALARM", "red"), ("false", "ok", "green"), ("true", "ALARM", "red")
)
LEVEL_COLORS = {
    SeverityLevel.LOW: "yellow",
    SeverityLevel.HIGH: "orange",
    SeverityLevel.CRITICAL: "red",
}
# A PLC alarm's level (core.severity's SeverityLevel, the `severity_level` of an alarm event) as
# its name in its level's colour.
LEVEL_MAPPINGS = value_mappings(
    *((str(level.value), level.name.lower(), color) for level, color in LEVEL_COLORS.items())
)
# The bounded severity's colours: one step per level of core.severity, from its LEVEL_FLOORS.
SEVERITY_STEPS: tuple[tuple[str, float | None], ...] = (
    ("green", None),
    *((LEVEL_COLORS[level], floor) for level, floor in LEVEL_FLOORS.items()),
)


def thresholds(*steps: Step) -> dash.ThresholdsConfig:
    """Absolute thresholds from (color, from value) steps, the first from -inf (None)."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for color, value in steps])
    )


def props(**values: object) -> list[model.DynamicConfigValue]:
    """Override properties; `custom__x` is `custom.x`."""
    return [
        model.DynamicConfigValue(id_val=k.replace("__", "."), value=v) for k, v in values.items()
    ]


# A table column of severities: one decimal, its cell coloured by level.
SEVERITY_CELL = props(
    decimals=1,
    min=0,
    max=SEVERITY_CAP,
    thresholds=thresholds(*SEVERITY_STEPS).build(),
    color={"mode": "thresholds"},
    custom__cellOptions={"type": cm.TableCellDisplayMode.COLOR_BACKGROUND},
)
# A table column of long texts: wide, and wrapped where even that is too narrow.
WRAPPED = props(
    custom__minWidth=400,
    custom__cellOptions={"type": cm.TableCellDisplayMode.AUTO, "wrapText": True},
)


def organize(
    *,
    order: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    hide: Sequence[str] = (),
) -> model.DataTransformerConfig:
    """Order, rename and hide table columns."""
    options: Json = {}
    if order:
        options["indexByName"] = {name: i for i, name in enumerate(order)}
    if rename:
        options["renameByName"] = dict(rename)
    if hide:
        options["excludeByName"] = dict.fromkeys(hide, True)
    return model.DataTransformerConfig(id_val="organize", options=options)


def sort_by(field: str) -> model.DataTransformerConfig:
    """Rows sorted by `field`, newest or largest first."""
    return model.DataTransformerConfig(
        id_val="sortBy", options={"sort": [{"field": field, "desc": True}]}
    )


def with_unit_overrides(panel: timeseries.Panel | stat_panel.Panel) -> None:
    """Give each series the unit its signal name carries (core.units): later overrides
    win, so the longest suffix goes last."""
    for suffix, (_, unit) in sorted(SUFFIXES.items(), key=lambda item: len(item[0])):
        panel.override_by_regexp(f"/.*{suffix}$/", props(unit=unit))


def _on(title: str, description: str, query: InfluxQL, panel: P) -> P:
    """`panel` titled, described, on the provisioned datasource, with its query."""
    return panel.title(title).description(description).datasource(DATASOURCE).with_target(query)


def _newest_of_every_field() -> common.ReduceDataOptions:
    """A stat or gauge reduction: the last non-null value of every field, whatever its type."""
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields(ALL_FIELDS).values(False)


def _legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def time_series(
    title: str,
    description: str,
    query: InfluxQL,
    *,
    unit: str = "",
    interval: str = "",
    threshold_line: float | None = None,
    bars: bool = False,
    steps: Sequence[Step] = (),
    soft_max: float | None = None,
    bridge_s: int = STALE_S,
) -> timeseries.Panel:
    """A time series panel for `fill(null)` queries: a line bridges a gap shorter than
    `bridge_s` (a change-only signal between keep-alives) and breaks at a longer one (no data,
    or bad samples); `threshold_line` draws a dashed red line there, `steps` a dashed line per
    step; `soft_max` keeps an all-zero series at the foot of a small axis, not of 0-100."""
    panel = (
        _on(title, description, query, timeseries.Panel())
        .draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(60 if bars else 0)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(bridge_s * 1000)
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .legend(_legend())
        .tooltip(
            common.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.MULTI)
            .sort(cm.SortOrder.DESCENDING)
        )
    )
    drawn: list[Step] = list(steps) or [("green", None)]
    if threshold_line is not None:
        drawn.append(("red", threshold_line))
    if len(drawn) > 1:
        panel.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    panel.thresholds(thresholds(*drawn))
    if soft_max is not None:
        panel.axis_soft_min(0.0).axis_soft_max(soft_max)
    if unit:
        panel.unit(unit)
    if interval:
        panel.interval(interval)
    return panel


def state_band(
    title: str,
    description: str,
    query: InfluxQL,
    mappings: list[model.ValueMapping],
    *,
    interval: str = "",
    links: Sequence[dash.DashboardLink] = (),
) -> statetimeline.Panel:
    """Coloured bands over time, one row per series; a null bucket (no data) is no colour."""
    panel = (
        _on(title, description, query, statetimeline.Panel())
        .mappings(mappings)
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(("green", None)))
        .fill_opacity(80)
        .line_width(0)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.9)
        .legend(_legend().show_legend(False))
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE))
    )
    if interval:
        panel.interval(interval)
    if links:
        panel.data_links(list(links))
    return panel


def stat(
    title: str,
    description: str,
    query: InfluxQL,
    *,
    unit: str = "",
    mappings: list[model.ValueMapping] | None = None,
    steps: Sequence[Step] = (),
    decimals: int | None = None,
    no_value: str = "",
) -> stat_panel.Panel:
    """The newest value of each series, big, whatever its type (booleans and strings too);
    coloured by `mappings` or `steps` when given."""
    coloured = bool(mappings or steps)
    panel = (
        _on(title, description, query, stat_panel.Panel())
        .reduce_options(_newest_of_every_field())
        .color_mode(cm.BigValueColorMode.BACKGROUND if coloured else cm.BigValueColorMode.NONE)
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(*(steps or [("green", None)])))
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
    )
    if mappings:
        panel.mappings(mappings)
    if unit:
        panel.unit(unit)
    if decimals is not None:
        panel.decimals(decimals)
    if no_value:
        panel.no_value(no_value)
    return panel


def bar_gauge(
    title: str, description: str, query: InfluxQL, *, unit: str, steps: Sequence[Step]
) -> bargauge.Panel:
    """One bar per series from min 0 to max 1, each coloured by the threshold it reaches."""
    return (
        _on(title, description, query, bargauge.Panel())
        .unit(unit)
        .min(0.0)
        .max(1.0)
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(*steps))
        .reduce_options(_newest_of_every_field())
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .name_placement(cm.BarGaugeNamePlacement.TOP)  # beside the bar, a name is cut short
    )


def table(
    title: str,
    description: str,
    query: InfluxQL,
    transformations: Iterable[model.DataTransformerConfig],
    *,
    sort: str = "",
) -> table_panel.Panel:
    """Rows of a table-format query (GROUP BY tags become columns after MERGE)."""
    panel = (
        _on(title, description, query, table_panel.Panel())
        .transformations(list(transformations))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(("green", None)))
    )
    if sort:
        panel.sort_by([common.TableSortByFieldState().display_name(sort).desc(True)])
    return panel


# The SDK's panel builders the dashboards use: each builds a model.Panel and has span and height.
PanelBuilder = (
    timeseries.Panel | stat_panel.Panel | table_panel.Panel | bargauge.Panel | statetimeline.Panel
)
Row = tuple[str, Sequence[tuple[PanelBuilder, int, int]]]


def build_dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[Row],
    *,
    variables: Sequence[dash.QueryVariable] = (),
    annotations: Sequence[dash.AnnotationQuery] = (),
    site_line: bool = True,
    time_from: str = "now-30m",  # a run started minutes ago fills a good part of it
) -> Json:
    """The dashboard model as Grafana loads it: rows of (panel, width, height) laid out left to
    right, panels numbered from 1, links to every other Shopfloor dashboard (by tag), $site
    and $line first (hidden where `site_line` is False: the data has no such tags, but the
    links keep the choice for the next dashboard)."""
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .version(1)
        .timezone("browser")
        .time(time_from, "now")
        .link(
            dash.DashboardLink("Shopfloor")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .variables([*site_line_variables(hide=not site_line), *variables])
        .annotations(list(annotations))
    )
    for row_title, panels in rows:
        board.with_row(dash.Row(row_title))
        for panel, width, height in panels:
            board.with_panel(panel.span(width).height(height))
    built = board.build()
    for number, built_panel in enumerate(built.panels or [], start=1):
        built_panel.id_val = number
    return json_model(built)


def json_model(built: model.Dashboard) -> Json:
    """The SDK model as plain JSON data."""
    return json.loads(json.dumps(built, cls=JSONEncoder))
