"""Builders for the Grafana dashboard JSON model (schema 39, Grafana 11/12) as plain dicts.

Only what the Shopfloor dashboards use: InfluxQL targets on the provisioned datasource, a few
panel kinds, query variables, annotations and a layout that hands out panel ids and grid
positions, so no two panels can overlap or share an id by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Json = dict[str, Any]

DATASOURCE_UID = (
    "shopfloor-influxdb"  # the uid of dashboards/provisioning/datasources/influxdb.yaml
)
DATASOURCE: Json = {"type": "influxdb", "uid": DATASOURCE_UID}
GRID_WIDTH = 24
MERGE: Json = {"id": "merge", "options": {}}  # one table from the series of a GROUP BY
SCHEMA_VERSION = 39
TAG = "shopfloor"

# Signal-name suffix -> Grafana unit id (or "suffix:TEXT"): units live in signal names (DESIGN.md),
# so a panel showing many signals gets each one's unit from an override on its name. Longest
# suffix first, as historian.units reads them; tests check both agree on every signal.
SUFFIX_UNITS: tuple[tuple[str, str], ...] = (
    ("_mm_s", "velocitymms"),
    ("_m3_min", "suffix: m³/min"),
    ("_per_min", "suffix: /min"),
    ("_hours", "h"),
    ("_kwh", "kwatth"),
    ("_lph", "litreh"),
    ("_bpm", "suffix: /min"),
    ("_kw", "kwatt"),
    ("_bar", "pressurebar"),
    ("_pct", "percent"),
    ("_hz", "hertz"),
    ("_nm", "forceNm"),
    ("_ml", "mlitre"),
    ("_c", "celsius"),
    ("_a", "amp"),
    ("_v", "volt"),
    ("_h", "h"),
    ("_total", "short"),
)


def value_mappings(*values: tuple[str, str, str]) -> list[Json]:
    """Value mappings from (value, text, color) triples, in the order Grafana lists them."""
    return [
        {
            "type": "value",
            "options": {
                value: {"text": text, "color": color, "index": index}
                for index, (value, text, color) in enumerate(values)
            },
        }
    ]


STATE_MAPPINGS = value_mappings(
    ("0", "stopped", "text"),
    ("1", "idle", "yellow"),
    ("2", "running", "green"),
    ("3", "faulted", "red"),
)
QUALITY_MAPPINGS = value_mappings(
    ("0", "good", "green"), ("1", "uncertain", "yellow"), ("2", "bad", "red")
)
FLAG_MAPPINGS = value_mappings(("true", "yes", "red"), ("false", "no", "green"))


def influxql(query: str, *, ref: str = "A", alias: str = "", table: bool = False) -> Json:
    """A raw InfluxQL target; `alias` may use $tag_<key> and $col as Grafana expands them."""
    target: Json = {
        "refId": ref,
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        target["alias"] = alias
    return target


def unit_overrides() -> list[Json]:
    """Field overrides that give each series the unit its signal name carries."""
    return [
        regex_override(f"/.*{suffix}$/", unit=unit)
        for suffix, unit in reversed(SUFFIX_UNITS)  # later overrides win: longest suffix last
    ]


def unit_for(signal: str) -> str:
    """The Grafana unit of a signal, from its name ('' when it carries none)."""
    for suffix, unit in SUFFIX_UNITS:
        if signal.endswith(suffix):
            return unit
    return ""


def _field_config(
    unit: str = "",
    *,
    mappings: Sequence[Json] = (),
    overrides: Sequence[Json] = (),
    custom: Mapping[str, Any] | None = None,
    min_max: tuple[float, float] | None = None,
    thresholds: Sequence[tuple[str, float | None]] = (("green", None),),
    links: Sequence[Json] = (),
) -> Json:
    defaults: Json = {
        "color": {"mode": "thresholds" if mappings else "palette-classic"},
        "mappings": list(mappings),
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for color, value in thresholds],
        },
    }
    if unit:
        defaults["unit"] = unit
    if custom:
        defaults["custom"] = dict(custom)
    if min_max:
        defaults["min"], defaults["max"] = min_max
    if links:
        defaults["links"] = list(links)
    return {"defaults": defaults, "overrides": list(overrides)}


def _panel(kind: str, title: str, description: str, targets: Sequence[Json], **extra: Any) -> Json:
    panel: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": list(targets),
    }
    panel.update(extra)
    return panel


def timeseries(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    unit: str = "",
    overrides: Sequence[Json] = (),
    interval: str = "",
    threshold_line: float | None = None,
    bars: bool = False,
) -> Json:
    """A time series panel; `threshold_line` draws a dashed red line at that value."""
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 0,
        "showPoints": "never",
        "spanNulls": True,
    }
    steps: list[tuple[str, float | None]] = [("green", None)]
    if threshold_line is not None:
        custom["thresholdsStyle"] = {"mode": "dashed"}
        steps.append(("red", threshold_line))
    extra: Json = {
        "fieldConfig": _field_config(unit, overrides=overrides, custom=custom, thresholds=steps),
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if interval:
        extra["interval"] = interval
    return _panel("timeseries", title, description, targets, **extra)


def state_timeline(
    title: str,
    description: str,
    targets: Sequence[Json],
    mappings: Sequence[Json],
    *,
    links: Sequence[Json] = (),
) -> Json:
    """Coloured bands over time, one row per series (machine states, signal quality)."""
    return _panel(
        "state-timeline",
        title,
        description,
        targets,
        fieldConfig=_field_config(
            mappings=mappings, custom={"fillOpacity": 80, "lineWidth": 0}, links=links
        ),
        options={
            "showValue": "never",
            "mergeValues": True,
            "rowHeight": 0.9,
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "tooltip": {"mode": "single"},
        },
    )


def stat(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    unit: str = "",
    mappings: Sequence[Json] = (),
    overrides: Sequence[Json] = (),
    decimals: int | None = None,
) -> Json:
    """The latest value of each series, big."""
    field_config = _field_config(unit, mappings=mappings, overrides=overrides)
    if decimals is not None:
        field_config["defaults"]["decimals"] = decimals
    return _panel(
        "stat",
        title,
        description,
        targets,
        fieldConfig=field_config,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value" if mappings else "none",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        },
    )


def bar_gauge(title: str, description: str, targets: Sequence[Json], *, unit: str) -> Json:
    """One bar per series, 0..1 coloured red below 60 % and green above 85 % (OEE figures)."""
    return _panel(
        "bargauge",
        title,
        description,
        targets,
        fieldConfig=_field_config(
            unit,
            min_max=(0.0, 1.0),
            thresholds=(("red", None), ("yellow", 0.6), ("green", 0.85)),
        ),
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
            "valueMode": "color",
        },
    )


def table(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    transformations: Sequence[Json] = (),
    overrides: Sequence[Json] = (),
    sort_by: str = "",
) -> Json:
    """A table; the targets should use table format (`influxql(..., table=True)`)."""
    options: Json = {"showHeader": True, "cellHeight": "sm"}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return _panel(
        "table",
        title,
        description,
        targets,
        fieldConfig=_field_config(overrides=overrides),
        options=options,
        transformations=list(transformations),
    )


def override(field: str, **properties: Any) -> Json:
    """Field config for one named column or series; a double underscore in a keyword stands
    for a dot (`custom__cellOptions=...` sets custom.cellOptions)."""
    return _override("byName", field, properties)


def regex_override(pattern: str, **properties: Any) -> Json:
    """Field config, as `override`, for every field whose name matches `/pattern/`."""
    return _override("byRegexp", pattern, properties)


def _override(matcher: str, options: str, properties: Mapping[str, Any]) -> Json:
    return {
        "matcher": {"id": matcher, "options": options},
        "properties": [{"id": key.replace("__", "."), "value": v} for key, v in properties.items()],
    }


def organize(
    *, order: Sequence[str] = (), rename: Mapping[str, str] | None = None, hide: Sequence[str] = ()
) -> Json:
    """The organize transformation: column order, new names and hidden columns."""
    options: Json = {}
    if order:
        options["indexByName"] = {name: i for i, name in enumerate(order)}
    if rename:
        options["renameByName"] = dict(rename)
    if hide:
        options["excludeByName"] = dict.fromkeys(hide, True)
    return {"id": "organize", "options": options}


def query_variable(
    name: str, label: str, query: str, *, multi: bool = False, hide: bool = False
) -> Json:
    """A variable whose values come from the historian (refreshed when the time range changes)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "regex": "",
        "hide": 2 if hide else 0,
    }


def annotation(name: str, color: str, query: str) -> Json:
    """Events as annotations: the `text` field is the text, the machine tag the tag."""
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": color,
        "query": query,
        "textColumn": "text",
        "tagsColumn": "machine",
        "titleColumn": "",
    }


class Layout:
    """Places panels left to right in rows of GRID_WIDTH and numbers them from 1."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._x = self._y = self._height = 0

    def row(self, title: str) -> None:
        """A full-width row header; the panels after it belong to it."""
        self._new_line()
        self._place({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self._new_line()

    def add(self, panel: Json, width: int, height: int) -> Json:
        """Put `panel` at the next free place; starts a new line when it does not fit."""
        if self._x + width > GRID_WIDTH:
            self._new_line()
        return self._place(panel, width, height)

    def _place(self, panel: Json, width: int, height: int) -> Json:
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": width, "h": height}
        self.panels.append(panel)
        self._x += width
        self._height = max(self._height, height)
        return panel

    def _new_line(self) -> None:
        self._y += self._height
        self._x = self._height = 0


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    *,
    variables: Iterable[Json] = (),
    annotations: Iterable[Json] = (),
    time_from: str = "now-1h",
) -> Json:
    """The dashboard model; `links` lead to every other Shopfloor dashboard (by tag)."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "timezone": "browser",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "title": "Shopfloor",
            }
        ],
        "templating": {"list": list(variables)},
        "annotations": {"list": list(annotations)},
        "panels": layout.panels,
    }
