"""The dashboards as a person sees them: drawn by Grafana 11.6's own frontend packages
(tests/dashboards/grafana_render.py) in headless chromium, 1600 px wide, against a real influxd
holding two real `shopfloor up` runs of the line (each with a voltage sag and a conveyor jam),
the second started after an outage, so its counters start again from zero.

Each dashboard is drawn once, with its own default time range ending while the second run's jam
episode is still open (just before `up`'s shutdown closed it), and the tests read what was drawn.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser

from core.schema import MachineState
from core.severity import LEVEL_FLOORS, SEVERITY_CAP, severity_level
from core.units import SUFFIXES
from testbed.browser import chromium
from tests.dashboards.conftest import LineRun, run_up
from tests.dashboards.grafana_queries import (
    ALERT_RULES,
    MODELS,
    Query,
    absolute_time_filter,
    expand,
)
from tests.dashboards.grafana_render import Drawn, draw

pytestmark = [pytest.mark.influxdb, pytest.mark.timeout(600)]

ROOT = Path(__file__).parents[2]
IMAGES = ROOT / "docs" / "images"
DOC = ROOT / "docs" / "dashboards.md"
MAX_IMAGE_BYTES = 400_000
UPDATE = os.environ.get("SHOPFLOOR_UPDATE_DOC_IMAGES") == "1"
OUTAGE_S = 40  # between the two runs: longer than a throughput bucket (10 s) several times
MACHINE = "conveyor"  # the machine detail dashboard shows the jammed one
STUDENT_RUN_S = 600  # what a student watches: a run of about ten minutes
RELATIVE = re.compile(r"now-(\d+)([mhd])")
UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def _colors(node: object) -> set[str]:
    """Every colour a dashboard names (mappings, thresholds)."""
    if isinstance(node, dict):
        own = {node["color"]} if isinstance(node.get("color"), str) else set()
        return own.union(*(_colors(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_colors(value) for value in node))
    return set()


# Named colours the tests need as Grafana's theme resolves them.
COLOR_NAMES = tuple(sorted(set().union(*(_colors(model) for model in MODELS.values()))))


@dataclass(frozen=True)
class History:
    """The two runs in the historian and the moment the dashboards are drawn at."""

    first: LineRun
    second: LineRun
    at_ms: int  # the end of every dashboard's time range

    def query(self, statement: str) -> dict[str, Any]:
        return self.second.query(statement)


def _drawn_at(run: LineRun) -> int:
    """Just before the second run's shutdown closed its open episodes: what a person watching
    the run saw last."""
    found = run.query(
        'SELECT "text" FROM "events" WHERE "kind" = \'anomaly\' AND "active" = false'
        f" AND time >= {run.start_ms}ms"
    )
    stopped = [
        row[0] for s in found.get("series", []) for row in s["values"] if "stopped" in row[1]
    ]
    assert stopped, f"no episode was open when the second run stopped: {found}"
    return min(stopped) - 1


@pytest.fixture(scope="module")
def history(line_run: LineRun) -> History:
    """The first run (line_run), an outage of OUTAGE_S, the second run."""
    time.sleep(max(0.0, line_run.end_ms / 1000 + OUTAGE_S - time.time()))
    second = run_up(line_run)
    return History(line_run, second, _drawn_at(second))


def _variables(history: History) -> dict[str, list[str]]:
    """Every dashboard variable's values from its own query; $machine is MACHINE."""
    values: dict[str, list[str]] = {}
    for model in MODELS.values():
        names = tuple(v["name"] for v in model["templating"]["list"])
        for variable in model["templating"]["list"]:
            name = variable["name"]
            if name in values:
                continue
            query = Query(f"${name}", variable["query"], variables=names)
            found = history.query(expand(query, values, to_ms=history.at_ms))
            listed = sorted({row[1] for s in found.get("series", []) for row in s["values"]})
            assert listed, f"variable ${name} lists nothing"
            values[name] = [MACHINE] if name == "machine" else listed
    return values


def _image_name(dashboard: str) -> str:
    return f"dashboard-{dashboard.removesuffix('.json')}.jpg"


def _window(model: Mapping[str, Any], to_ms: int) -> tuple[int, int]:
    found = RELATIVE.fullmatch(model["time"]["from"])
    assert found and model["time"]["to"] == "now", model["time"]
    return to_ms - int(found.group(1)) * UNIT_S[found.group(2)] * 1000, to_ms


def draw_all(history: History, folder: Path) -> dict[str, Drawn]:
    """Every dashboard drawn once (one chromium, one page load each), screenshots in `folder`."""
    values = _variables(history)
    with chromium() as browser:
        return {name: _draw(browser, history, name, values, folder) for name in MODELS}


def _draw(
    browser: Browser, history: History, name: str, values: dict[str, list[str]], folder: Path
) -> Drawn:
    model = MODELS[name]
    window = _window(model, history.at_ms)
    variables = model["templating"]["list"]
    names = tuple(v["name"] for v in variables)
    multi = frozenset(v["name"] for v in variables if v.get("multi"))

    def answer(request: Mapping[str, Any]) -> dict[str, Any]:
        expanded = expand(
            Query(name, request["query"], request["interval"], names, multi),
            {**values, **request["scoped"]},
            time_filter=absolute_time_filter(*window),
            to_ms=window[1],
        )
        return history.query(expanded)

    image = folder / _image_name(name)
    return draw(browser, model, window, values, answer, image, COLOR_NAMES)


@pytest.fixture(scope="module")
def drawn(history: History, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Drawn]:
    """The dashboards as drawn; screenshots into docs/images with SHOPFLOOR_UPDATE_DOC_IMAGES=1,
    else into a temporary folder (test artifacts)."""
    return draw_all(history, IMAGES if UPDATE else tmp_path_factory.mktemp("dashboards"))


DASHBOARDS = list(MODELS)
NO_DATA = "No data"


def _rows(answers: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(s["values"]) for a in answers for s in a.get("series") or [])


def _shows_nothing(panel: Mapping[str, Any]) -> bool:
    """The panel says No data (or its no-value text): nothing drawn."""
    if panel["type"] in ("stat", "bargauge"):
        return all(v["numeric"] != v["numeric"] or v["text"] == NO_DATA for v in panel["values"])
    return not any(frame["length"] for frame in panel["frames"])


def _field(panel: Mapping[str, Any], name: str) -> dict[str, Any]:
    (frame,) = panel["frames"]
    found = [f for f in frame["fields"] if f["displayName"] == name]
    assert found, (
        f"{panel['title']}: no column {name!r} in {[f['displayName'] for f in frame['fields']]}"
    )
    return found[0]


def _series_points(history: History, statement: str) -> dict[tuple[str, ...], list[list[Any]]]:
    found = history.query(statement)
    return {tuple(s.get("tags", {}).values()): s["values"] for s in found.get("series", [])}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_draws_without_an_error(drawn: dict[str, Drawn], name: str) -> None:
    assert drawn[name].errors == []


@pytest.mark.parametrize("name", DASHBOARDS)
def test_no_panel_says_no_data_where_the_historian_answered_rows(
    drawn: dict[str, Drawn], name: str
) -> None:
    """Item 1 among them: the in-progress table dropped every open episode. A panel's first
    query is its data; a second one (B) only narrows it."""
    empty = [
        p["title"]
        for p in drawn[name].panels
        if _shows_nothing(p) and _rows(drawn[name].answers.get(p["title"], [])[:1])
    ]
    assert empty == []


@pytest.mark.parametrize("name", DASHBOARDS)
def test_no_text_is_cut_off_at_1600_px(drawn: dict[str, Drawn], name: str) -> None:
    """Items 5, 6 and 8: a cell, a header or a tile too narrow for its text."""
    cut = sorted({(c["panel"], c["text"]) for c in drawn[name].clipped})
    assert cut == []


def test_episodes_in_progress_are_the_open_ones(history: History, drawn: dict[str, Drawn]) -> None:
    """Item 1: the machines whose last episode event before the end of the range opened one."""
    last = _series_points(
        history,
        'SELECT last("active") FROM "events" WHERE "kind" = \'anomaly\''
        f' AND time <= {history.at_ms}ms GROUP BY "machine"',
    )
    open_now = sorted(machine for (machine,), rows in last.items() if rows[0][1])
    assert "conveyor" in open_now  # the jam of the second run
    panel = drawn["anomalies.json"].panel("Anomaly episodes in progress")
    assert sorted(_field(panel, "machine")["values"]) == open_now


def test_active_alarms_are_the_plc_conditions_active_at_the_end(
    history: History, drawn: dict[str, Drawn]
) -> None:
    """The simulator's alarms that the runs' jams raised, as the connector stored them: the
    panel lists each condition whose newest event up to the end of the range is active."""
    found = history.query(
        'SELECT "condition_id", "condition", "active" FROM "events" WHERE "kind" = \'alarm\''
        f" AND time <= {history.at_ms}ms"
    )
    newest = {row[1]: row for s in found.get("series", []) for row in s["values"]}
    active = sorted(condition for _, _, condition, is_active in newest.values() if is_active)
    assert active, f"no PLC alarm active when drawn: {found}"
    panel = drawn["line-overview.json"].panel("Active alarms")
    assert sorted(_field(panel, "condition")["values"]) == active


def _rise(values: Sequence[float | None]) -> float:
    """What a counter rose by: the sum of its non-negative steps (a restart is no step)."""
    seen = [v for v in values if v is not None]
    return sum(max(0.0, b - a) for a, b in itertools.pairwise(seen))


def _counter_truth(history: History, where: str) -> dict[str, float]:
    start, end = _window(MODELS["line-overview.json"], history.at_ms)
    points = _series_points(
        history,
        f'SELECT "value" FROM "telemetry" WHERE {where} AND time >= {start}ms'
        f' AND time <= {end}ms GROUP BY "machine", "signal"',
    )
    restarted = [
        key
        for key, rows in points.items()
        if any(
            b[1] < a[1]
            for a, b in itertools.pairwise(rows)
            if a[1] is not None and b[1] is not None
        )
    ]
    assert restarted, "no counter restarted between the runs"
    return {" ".join(key): _rise([row[1] for row in rows]) for key, rows in points.items()}


def test_totals_count_across_the_restart(history: History, drawn: dict[str, Drawn]) -> None:
    """Item 2: produced units and energy equal the rise of the raw points, restart included."""
    board = drawn["line-overview.json"]
    produced = _counter_truth(history, '"signal" =~ /_total$/')
    shown = {v["title"]: v["text"] for v in board.panel("Produced in the time range")["values"]}
    assert shown == {key: f"{truth:.0f}" for key, truth in produced.items()}
    energy = {
        k.split()[0]: v for k, v in _counter_truth(history, "\"signal\" = 'energy_kwh'").items()
    }
    used = {
        v["title"]: v["numeric"] for v in board.panel("Energy used in the time range")["values"]
    }
    assert used == pytest.approx(energy)


def test_the_outage_is_a_gap_on_every_time_chart(history: History, drawn: dict[str, Drawn]) -> None:
    """Item 3: every line that has points before and after the outage has null points in it,
    so the panel's gap rule can break the line (a rate with no rows there drew a diagonal)."""
    outage = (history.first.end_ms, history.second.start_ms)
    straight = []
    for name, board in drawn.items():
        for panel in board.panels:
            if panel["type"] != "timeseries" or "Anomalous windows" in panel["title"]:
                continue  # bars: no bar is the gap
            for frame in panel["frames"]:
                time_field, value = frame["fields"][0], frame["fields"][1]
                times = time_field["values"]
                if not times or times[0] >= outage[0] or times[-1] <= outage[1]:
                    continue
                inside = [
                    v
                    for t, v in zip(times, value["values"], strict=True)
                    if outage[0] < t < outage[1]
                ]
                if None not in inside:
                    straight.append(f"{name}: {panel['title']}: {value['displayName']}")
    assert straight == []


def test_annotations_mark_each_start_once_and_stay_off_the_overview(
    history: History, drawn: dict[str, Drawn]
) -> None:
    """Item 4: one line per fault or episode (its start), not a start and an end each, and
    none on the line overview, where every machine's events would cover every chart."""
    values = _variables(history)
    starts = {
        row[0]
        for rows in _series_points(
            history, 'SELECT "text" FROM "events" WHERE "active" = true GROUP BY "kind"'
        ).values()
        for row in rows
    }
    assert starts
    for name, model in MODELS.items():
        items = model["annotations"]["list"]
        if name == "connectors-health.json":
            continue  # no site, line or machine: nothing to mark
        assert len({item["name"] for item in items}) == len(items) == 2, name
        if name == "line-overview.json":
            assert not any(item["enable"] for item in items)
            continue
        names = tuple(v["name"] for v in model["templating"]["list"])
        for item in items:
            query = Query(name, item["target"]["query"], variables=names)
            text = expand(
                query, values, time_filter=absolute_time_filter(*_window(model, history.at_ms))
            )
            marks = [row[0] for rows in _series_points(history, text).values() for row in rows]
            assert marks and set(marks) <= starts, f"{name}: {item['name']}"


def _level_colors(board: Drawn, field: Mapping[str, Any]) -> list[str]:
    """The colour of each severity level, from the field's threshold steps, which must start
    at core.severity's LEVEL_FLOORS."""
    steps = field["config"]["thresholds"]["steps"]
    assert [step["value"] for step in steps[1:]] == list(LEVEL_FLOORS.values()), steps
    return [board.colors[step["color"]] for step in steps]


def test_severity_not_raw_scores(drawn: dict[str, Drawn]) -> None:
    """Item 5: no table shows a raw score; every severity is on the bounded scale and coloured
    by its level (core.severity's LEVEL_FLOORS)."""
    seen = 0
    for name, board in drawn.items():
        for panel in board.panels:
            if panel["type"] != "table" or not panel["frames"]:
                continue
            for field in panel["frames"][0]["fields"]:
                shown = f"{name}: {panel['title']}: {field['displayName']}"
                assert "score" not in field["displayName"], shown
                assert "threshold" not in field["displayName"], shown
                if "severity" in field["displayName"]:
                    levels = _level_colors(board, field)
                    for value, color in zip(field["values"], field["colors"], strict=True):
                        assert 0 <= value <= SEVERITY_CAP, shown
                        assert color == levels[severity_level(value)], f"{shown}: {value}"
                        seen += 1
    assert seen


def test_machine_detail_reads_states_and_alarms_as_words(drawn: dict[str, Drawn]) -> None:
    """Item 6: the state is a name, alarms say ok or ALARM, units are applied, and the signal
    quality rows are tall enough to read."""
    board = drawn["machine-detail.json"]
    latest = {v["title"]: v["text"] + v["suffix"] for v in board.panel("Latest values")["values"]}
    assert latest["state"] in {state.name.lower() for state in MachineState}
    alarms = {k: v for k, v in latest.items() if k.startswith("alarm_")}
    assert alarms and set(alarms.values()) <= {"ok", "ALARM"}, alarms
    for signal, text in latest.items():
        suffix = next((s for s in SUFFIXES if signal.endswith(s)), None)
        if suffix:
            assert not re.fullmatch(r"[-\d.,]+", text), f"{signal} shows {text!r}, no unit"
    assert board.panel("Signal quality")["rowHeight"] >= 16


def test_default_ranges_fit_a_run_and_durations_read_whole(drawn: dict[str, Drawn]) -> None:
    """Item 7: a student's ten-minute run fills at least a third of every dashboard's time
    axis, and an episode's duration reads in whole units, not "1.77 mins"."""
    for name, model in MODELS.items():
        start, end = _window(model, 0)
        assert STUDENT_RUN_S * 1000 / (end - start) >= 1 / 3, f"{name} opens on {model['time']}"
    panel = drawn["anomalies.json"].panel("Anomaly episodes (ended)")
    durations = _field(panel, "duration")["texts"]
    assert durations and all(re.fullmatch(r"\d+ \w+(, \d+ \w+)*", t) for t in durations), durations


def test_connector_rates_sit_on_a_small_axis(drawn: dict[str, Drawn]) -> None:
    """Item 8: errors and reconnects are zero here; a soft maximum of 1/s draws them at the
    foot of a 0-1 axis, not flat on Grafana's default 0-100 one."""
    board = drawn["connectors-health.json"]
    for title in ("Errors/s", "Reconnects/s"):
        for frame in board.panel(title)["frames"]:
            custom = frame["fields"][1]["config"]["custom"] or {}
            assert 0 < (custom.get("axisSoftMax") or 0) <= 1, title


def _rgb(color: str) -> tuple[int, ...]:
    """#rrggbb or rgb(r, g, b) as numbers."""
    hex_color = re.fullmatch(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})", color)
    if hex_color:
        return tuple(int(part, 16) for part in hex_color.groups())
    rgb = re.fullmatch(r"rgba?\((\d+), *(\d+), *(\d+).*\)", color)
    assert rgb, color
    return tuple(int(part) for part in rgb.groups())


def test_stopped_is_grey(drawn: dict[str, Drawn]) -> None:
    """Item 9: "stopped" is a mid grey on the dark theme, not its near-white text colour."""
    board = drawn["line-overview.json"]
    mapping = next(
        m
        for p in MODELS["line-overview.json"]["panels"]
        if p["title"] == "Machine states"
        for m in p["fieldConfig"]["defaults"]["mappings"]
    )
    stopped = mapping["options"][str(MachineState.STOPPED.value)]["color"]
    red, green, blue = _rgb(board.colors[stopped])
    assert max(red, green, blue) - min(red, green, blue) <= 16 and 96 <= red <= 176


def _rule_firing(history: History, uid: str, at_ms: int) -> dict[str, bool]:
    """Series name -> whether the rule `uid` fires at `at_ms`: its query over its look-back,
    reduced to the last value, against its threshold (as Grafana evaluates it)."""
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r["uid"] == uid]
    (source,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    (limit,) = [d for d in rule["data"] if d["model"].get("type") == "threshold"]
    evaluator = limit["model"]["conditions"][0]["evaluator"]
    since = at_ms - source["relativeTimeRange"]["from"] * 1000
    text = expand(
        Query(uid, source["model"]["query"]), {}, time_filter=absolute_time_filter(since, at_ms)
    )
    firing = {}
    for series in history.query(text).get("series", []):
        tags = series["tags"]
        last = [row[1] for row in series["values"] if row[1] is not None][-1]
        limit_value = evaluator["params"][0]
        firing[tags.get("machine") or tags["connector"]] = (
            last > limit_value if evaluator["type"] == "gt" else last < limit_value
        )
    return firing


def test_alert_rules_fire_where_a_person_expects_on_the_same_data(history: History) -> None:
    """The anomaly rule fires for the machines with an episode in its look-back (open or
    closed there), no other; the connector rule is quiet while connectors deliver, and across
    the outage too, which is shorter than its 3 minutes of silence."""
    lookback_ms = 120_000
    events = _series_points(
        history,
        'SELECT "active" FROM "events" WHERE "kind" = \'anomaly\''
        f' AND time <= {history.at_ms}ms GROUP BY "machine"',
    )
    expected = {
        machine
        for (machine,), rows in events.items()
        if any(t >= history.at_ms - lookback_ms for t, _ in rows)
        or [active for t, active in rows if t < history.at_ms - lookback_ms][-1:] == [True]
    }
    firing = _rule_firing(history, "shopfloor-anomaly-episode", history.at_ms)
    assert {machine for machine, fires in firing.items() if fires} == expected
    for at_ms in (history.at_ms, history.second.start_ms - 1):
        connectors = _rule_firing(history, "shopfloor-connector-stalled", at_ms)
        assert connectors and not any(connectors.values()), (at_ms, connectors)


def test_the_docs_show_every_dashboard_as_drawn(drawn: dict[str, Drawn]) -> None:
    """docs/dashboards.md shows a picture of each dashboard that this test drew (written there
    with SHOPFLOOR_UPDATE_DOC_IMAGES=1): a JPEG, not too large."""
    text = DOC.read_text(encoding="utf-8")
    for name in drawn:
        image = IMAGES / _image_name(name)
        assert f"(images/{image.name})" in text, f"{DOC.name} does not show {image.name}"
        data = image.read_bytes()
        assert data[:3] == b"\xff\xd8\xff" and len(data) <= MAX_IMAGE_BYTES, image
