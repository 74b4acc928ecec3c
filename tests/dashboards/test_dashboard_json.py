"""The generated dashboard JSON: current, well-formed for Grafana 11.6, and each of the screen
truths the issue list named: Grafana's own unit ids, annotations in the target form, stats that
keep booleans, bar gauges coloured by their thresholds, gaps that the descriptions promise,
severity on its bounded axis, $site/$line on every query, one source for states and units."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import schema as data_model
from core.severity import LEVEL_FLOORS, SEVERITY_CAP
from core.units import SUFFIXES, grafana_unit_of, unit_of
from dashboards import build
from dashboards.influxql import DATASOURCE, SITE_LINE, STALE_S
from dashboards.panels import STATE_MAPPINGS
from plc_sim import MachineState as SimMachineState
from plc_sim.spec import UNITS as SIM_UNITS
from plc_sim.spec import load_line
from tests.dashboards import grafana_units
from tests.dashboards.grafana_queries import MODELS, dashboard_queries

PROVISIONING = Path(__file__).parents[2] / "dashboards" / "provisioning"
GRID_WIDTH = 24
GRAFANA_PACKAGE, GRAFANA_UNIT_IDS = grafana_units.load()
SITE_LINE_MEASUREMENTS = {
    m.name for m in data_model.MEASUREMENTS.values() if {"site", "line"} <= set(m.tags)
}


def test_json_files_are_current() -> None:
    assert build.stale() == [], f"dashboard JSON is stale: run `{build.COMMAND}`"


def test_stale_files_are_found_and_rewritten(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "anomalies.json").write_text("{}")
    assert set(build.stale(tmp_path)) == {*build.DASHBOARDS, "old.json"}
    build.write(tmp_path)
    assert build.stale(tmp_path) == []
    assert not (tmp_path / "old.json").exists()


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("name", MODELS)
def test_panel_ids_are_unique(name: str) -> None:
    ids = [panel["id"] for panel in MODELS[name]["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", MODELS)
def test_every_datasource_is_the_provisioned_one(name: str) -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    (source,) = provisioned["datasources"]
    refs = [node["datasource"] for node in _walk(MODELS[name]) if "datasource" in node]
    assert refs
    assert all(ref == {"type": source["type"], "uid": source["uid"]} for ref in refs), refs
    assert source["uid"] == DATASOURCE.uid


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


@pytest.mark.parametrize("name", MODELS)
def test_no_panels_overlap_and_all_fit_the_grid(name: str) -> None:
    panels = MODELS[name]["panels"]
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_WIDTH and pos["h"] > 0, panel["title"]
    for a, b in combinations(panels, 2):
        assert not _overlap(a["gridPos"], b["gridPos"]), (a["title"], b["title"])


def test_the_overlap_check_sees_an_overlap() -> None:
    assert _overlap({"x": 0, "y": 0, "w": 12, "h": 8}, {"x": 8, "y": 7, "w": 4, "h": 1})
    assert not _overlap({"x": 0, "y": 0, "w": 12, "h": 8}, {"x": 12, "y": 0, "w": 12, "h": 8})


@pytest.mark.parametrize("name", MODELS)
def test_repeats_and_links_point_at_what_exists(name: str) -> None:
    model = MODELS[name]
    variables = {v["name"] for v in model["templating"]["list"]}
    uids = {m["uid"] for m in MODELS.values()}
    for panel in model["panels"]:
        if "repeat" in panel:
            assert panel["repeat"] in variables, panel["title"]
    for node in _walk(model):
        url = node.get("url", "") if isinstance(node.get("url"), str) else ""
        if url.startswith("/d/"):
            assert url[3:].split("?")[0] in uids, url


def test_variables_come_from_the_historian() -> None:
    variables = [v for m in MODELS.values() for v in m["templating"]["list"]]
    assert {v["name"] for v in variables} >= {"site", "line", "machine", "signal", "connector"}
    assert all(v["type"] == "query" and v["query"].startswith("SHOW TAG VALUES") for v in variables)


def _panels(name: str) -> list[dict[str, Any]]:
    return [p for p in MODELS[name]["panels"] if p["type"] != "row"]


def _units(node: Any) -> Iterator[str]:
    for item in _walk(node):
        if isinstance(item.get("unit"), str):
            yield item["unit"]
        if item.get("id") == "unit" and isinstance(item.get("value"), str):
            yield item["value"]  # an override's property


def test_the_unit_list_is_grafanas_for_the_compose_image() -> None:
    compose = yaml.safe_load((PROVISIONING.parents[1] / "compose.yaml").read_text())
    image = compose["services"]["grafana"]["image"]
    assert f"@grafana/data@{image.rpartition(':')[2]}" == GRAFANA_PACKAGE
    assert {"celsius", "amp", "volt", "percentunit", "kwatth"} <= GRAFANA_UNIT_IDS


@pytest.mark.parametrize("name", MODELS)
def test_every_unit_is_a_grafana_unit(name: str) -> None:
    units = set(_units(MODELS[name]))
    assert units
    unknown = sorted(u for u in units if not grafana_units.is_grafana_unit(u, GRAFANA_UNIT_IDS))
    assert unknown == [], f"not in {GRAFANA_PACKAGE}'s valueFormats: {unknown}"


def test_the_unit_check_knows_a_non_unit() -> None:
    assert not grafana_units.is_grafana_unit("velocitymms", GRAFANA_UNIT_IDS)
    assert not grafana_units.is_grafana_unit("suffix:", GRAFANA_UNIT_IDS)
    assert grafana_units.is_grafana_unit("suffix:mm/s", GRAFANA_UNIT_IDS)
    assert grafana_units.unit_ids('[{ name: "Hertz (1/s)", id: "hertz", fn: f }]') == ["hertz"]


def test_every_suffix_has_a_grafana_unit_and_a_symbol() -> None:
    for suffix, (symbol, unit) in SUFFIXES.items():
        assert symbol and grafana_units.is_grafana_unit(unit, GRAFANA_UNIT_IDS), suffix


@pytest.mark.parametrize(
    ("signal", "symbol", "grafana"),
    [
        ("vibration_mm_s", "mm/s", "suffix:mm/s"),  # not `_s` seconds, and not "velocitymms"
        ("energy_kwh", "kWh", "kwatth"),  # not `_h` hours
        ("product_temp_c", "°C", "celsius"),
        ("bottles_filled_total", "count", "short"),
        ("state", "", ""),
    ],
)
def test_one_table_gives_symbol_and_grafana_unit(signal: str, symbol: str, grafana: str) -> None:
    assert (unit_of(signal), grafana_unit_of(signal)) == (symbol, grafana)


def test_the_simulators_units_agree_with_the_signal_names() -> None:
    """plc_sim keeps its own table (line-file unit -> OPC UA EngineeringUnits: it may not import
    historian); each shipped signal's unit is the one its name carries."""
    for machine in load_line().machines.values():
        for name, signal in machine.signals.items():
            display = SIM_UNITS[signal.unit][1]
            named = unit_of(name)
            if signal.unit == "1":  # dimensionless: states, flags, counters
                assert named in {"", "count"}, name
            else:
                assert named in {signal.unit, display}, (name, signal.unit, display, named)


def test_unit_overrides_are_the_historian_table() -> None:
    (detail,) = [m for m in MODELS.values() if m["uid"] == "shopfloor-machine-detail"]
    (signal_panel,) = [p for p in detail["panels"] if p.get("repeat") == "signal"]
    found = {
        o["matcher"]["options"]: o["properties"][0]["value"]
        for o in signal_panel["fieldConfig"]["overrides"]
    }
    assert found == {f"/.*{suffix}$/": unit for suffix, (_, unit) in SUFFIXES.items()}


def test_machine_states_have_one_definition() -> None:
    """plc_sim may not import historian: its encoding is pinned to the contract here."""
    assert {s.name: s.value for s in SimMachineState} == {
        s.name: s.value for s in data_model.MachineState
    }
    (mapping,) = STATE_MAPPINGS
    assert {int(k): v.text for k, v in mapping.options.items()} == {
        s.value: s.name.lower() for s in data_model.MachineState
    }


@pytest.mark.parametrize("name", MODELS)
def test_annotations_are_targets_grafana_runs(name: str) -> None:
    """Grafana's InfluxDB datasource runs an annotation's `target`; a top-level `query` only
    survives a legacy migration that is not applied to provisioned annotations."""
    for item in MODELS[name]["annotations"]["list"]:
        assert "query" not in item, item["name"]
        target = item["target"]
        assert target["rawQuery"] is True and "$timeFilter" in target["query"], item["name"]
        assert target["textColumn"] == "text" and target["tagsColumn"] == "machine"
        assert item["datasource"] == {"type": DATASOURCE.type_val, "uid": DATASOURCE.uid}


def _grafana_field_matcher(fields: str) -> re.Pattern[str] | None:
    """Grafana's reduceOptions.fields (fieldDisplay.ts): "" is numeric fields only (None),
    else a /regex/ matched against each field's display name (stringToJsRegex)."""
    if not fields:
        return None
    found = re.fullmatch(r"/(.*?)/([gimys]*)", fields)
    return re.compile(found.group(1)) if found else re.compile(f"^{fields}$")


@pytest.mark.parametrize("name", MODELS)
def test_stats_and_gauges_keep_every_field_type(name: str) -> None:
    """fields "" keeps numbers only: a boolean (connected) would be "No data"; the Time field
    would be a tile of its own. A stat of rows (a tile per row: active alarms per level) names
    the one field it shows instead, or its row names would be tiles too."""
    for panel in _panels(name):
        reduce = panel.get("options", {}).get("reduceOptions", {})
        if panel["type"] == "stat" and reduce.get("values"):
            matcher = _grafana_field_matcher(reduce["fields"])
            assert matcher is not None and not matcher.search("level"), panel["title"]
            continue
        if panel["type"] in {"stat", "bargauge"}:
            matcher = _grafana_field_matcher(panel["options"]["reduceOptions"]["fields"])
            assert matcher is not None, f"{panel['title']}: numeric fields only"
            for value_field in ("plc-a", "connected", "filler fill_volume_ml", "state"):
                assert matcher.search(value_field), (panel["title"], value_field)
            assert not matcher.search("Time"), panel["title"]


@pytest.mark.parametrize("name", MODELS)
def test_thresholds_colour_what_has_them(name: str) -> None:
    """A palette colour mode ignores thresholds: every panel with more than one step (OEE bar
    gauge, ages) colours by them, or draws them as lines (time series)."""
    for panel in _panels(name):
        defaults = panel["fieldConfig"]["defaults"]
        if len(defaults.get("thresholds", {}).get("steps", [])) > 1:
            if panel["type"] == "timeseries":
                assert defaults["custom"]["thresholdsStyle"]["mode"] != "off", panel["title"]
            else:
                assert defaults["color"]["mode"] == "thresholds", panel["title"]


def test_oee_gauge_is_red_below_60_and_green_above_85() -> None:
    (gauge,) = [p for p in _panels("line-overview.json") if p["type"] == "bargauge"]
    steps = gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [
        ("red", None),
        ("yellow", 0.6),
        ("green", 0.85),
    ]


@pytest.mark.parametrize("name", MODELS)
def test_time_series_gaps_are_what_descriptions_say(name: str) -> None:
    """fill(none) gives no nulls to break a line at, and spanNulls: true bridges every gap: a
    line only breaks where its query fills empty buckets with null and spanNulls is a limit,
    which the description names."""
    for panel in _panels(name):
        if panel["type"] != "timeseries":
            continue
        custom = panel["fieldConfig"]["defaults"]["custom"]
        span = custom.get("spanNulls")
        if custom.get("drawStyle") == "bars":
            continue
        assert span is not True and isinstance(span, int | float), panel["title"]
        for target in panel["targets"]:
            assert "fill(null)" in target["query"], (panel["title"], target["query"])
        assert f"{round(span / 1000)} s" in panel["description"], panel["title"]


@pytest.mark.parametrize("name", MODELS)
def test_severity_is_drawn_on_its_bounded_axis_with_the_level_floors(name: str) -> None:
    """No chart draws a raw score; severity charts run 0 to SEVERITY_CAP with a dashed step at
    each level's floor (core.severity, the one source)."""
    for panel in _panels(name):
        queries = " ".join(t["query"] for t in panel.get("targets", []))
        if panel["type"] != "timeseries" or "count(" in queries:
            continue
        assert 'max("score")' not in queries, panel["title"]
        if '"severity"' in queries:
            defaults = panel["fieldConfig"]["defaults"]
            assert (defaults["min"], defaults["max"]) == (0, SEVERITY_CAP), panel["title"]
            steps = [s["value"] for s in defaults["thresholds"]["steps"]]
            assert steps == [None, *LEVEL_FLOORS.values()], panel["title"]


def test_every_query_on_a_line_is_filtered_by_site_and_line() -> None:
    checked = 0
    for query in dashboard_queries():
        measurement = re.search(r'FROM "([^"]+)"', query.text)
        if measurement and measurement.group(1) in SITE_LINE_MEASUREMENTS:
            if "variable $site" in query.where:
                continue
            if "variable $line" in query.where:
                assert '"site" =~ /^$site$/' in query.text
                continue
            assert SITE_LINE in query.text, query.where
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m["templating"]["list"]])
def test_site_and_line_come_first_and_are_kept_across_links(name: str) -> None:
    """Every dashboard has $site and $line first, so its links carry the choice on; the
    connector measurement has neither tag, so there they are hidden (they filter nothing)."""
    variables = MODELS[name]["templating"]["list"]
    assert [v["name"] for v in variables[:2]] == ["site", "line"]
    hidden = [v.get("hide") == 2 for v in variables[:2]]
    assert hidden == [name == "connectors-health.json"] * 2


def _age_panels() -> list[dict[str, Any]]:
    return [p for m in MODELS.values() for p in m["panels"] if '"age_s"' in str(p.get("targets"))]


def test_sample_age_is_shown_per_machine_and_per_connector_red_when_stale() -> None:
    panels = {p["title"]: p for p in _age_panels()}
    assert set(panels) == {"Newest sample age per machine", "Report age"}
    for panel in panels.values():
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["unit"] == "s" and defaults["color"]["mode"] == "thresholds"
        assert panel["options"]["colorMode"] == "background"
    steps = panels["Newest sample age per machine"]["fieldConfig"]["defaults"]["thresholds"]
    assert [(s["color"], s["value"]) for s in steps["steps"]] == [("green", None), ("red", STALE_S)]
