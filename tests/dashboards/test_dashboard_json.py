"""The generated dashboard JSON: current, well-formed for Grafana, units as the historian reads
them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from dashboards.grafana import DATASOURCE, GRID_WIDTH, SUFFIX_UNITS, unit_for, unit_overrides
from historian.units import unit_of
from plc_sim.spec import load_line

PROVISIONING = Path(__file__).parents[2] / "dashboards" / "provisioning"
MODELS = {name: json.loads(text) for name, text in build.render().items()}
# Grafana unit id -> the unit as historian.units spells it
GRAFANA_UNITS = {
    "velocitymms": "mm/s",
    "suffix: m³/min": "m³/min",
    "suffix: /min": "1/min",
    "h": "h",
    "kwatth": "kWh",
    "litreh": "L/h",
    "kwatt": "kW",
    "pressurebar": "bar",
    "percent": "%",
    "hertz": "Hz",
    "forceNm": "N·m",
    "mlitre": "mL",
    "celsius": "°C",
    "amp": "A",
    "volt": "V",
    "short": "count",
    "": "",
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
    assert source["uid"] == DATASOURCE["uid"]


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
    assert {v["name"] for v in variables} >= {"machine", "signal", "connector"}
    assert all(v["type"] == "query" and v["query"].startswith("SHOW TAG VALUES") for v in variables)


def test_units_agree_with_the_historian_for_every_signal() -> None:
    signals = {s for m in load_line().machines.values() for s in m.signals}
    signals |= {f"x{suffix}" for suffix, _ in SUFFIX_UNITS}
    for signal in sorted(signals):
        assert GRAFANA_UNITS[unit_for(signal)] == unit_of(signal), signal


def test_unit_overrides_cover_every_suffix() -> None:
    units = {o["properties"][0]["value"] for o in unit_overrides()}
    assert units == {unit for _, unit in SUFFIX_UNITS}
