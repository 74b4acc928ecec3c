"""PLC alarms on the dashboards as a person sees them: drawn by Grafana 11.6's own frontend
packages (tests/dashboards/grafana_render.py) in headless chromium, against a real influxd
holding alarm events as a connector writes them (connectors/opcua/alarms.py): raised,
acknowledged, cleared, raised again, one raised two days ago and unchanged since, one on
another line, and one that clears only after the end of the time range.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.severity import SeverityLevel, opcua_severity_level
from dashboards.panels import LEVEL_COLORS
from historian import open_historian
from testbed.browser import chromium
from tests.alarm_events import LINE, SITE, TIMELINE, active_at, raised
from tests.conftest import fresh_database
from tests.dashboards.conftest import LineRun
from tests.dashboards.grafana_queries import MODELS, Query, absolute_time_filter, expand
from tests.dashboards.grafana_render import Drawn, draw

pytestmark = [pytest.mark.influxdb, pytest.mark.timeout(300)]
WINDOW_S = 1800  # both dashboards open on the last 30 minutes


@dataclass(frozen=True)
class Alarms:
    now: int
    drawn: dict[str, Drawn]


async def _write(url: str, now: int) -> None:
    async with open_historian(url) as historian:
        await historian.write_points([event.point(now) for event in TIMELINE])


def _draw(browser: Any, run: LineRun, name: str, now: int, folder: Path) -> Drawn:
    model = MODELS[name]
    window = ((now - WINDOW_S) * 1000, now * 1000)
    variables = {"site": [SITE], "line": [LINE], "machine": ["conveyor"], "signal": ["state"]}
    names = tuple(v["name"] for v in model["templating"]["list"])
    multi = frozenset(v["name"] for v in model["templating"]["list"] if v.get("multi"))

    def answer(request: Mapping[str, Any]) -> dict[str, Any]:
        query = Query(name, request["query"], request["interval"], names, multi)
        return run.query(
            expand(query, variables, time_filter=absolute_time_filter(*window), to_ms=window[1])
        )

    image = folder / f"{name}.jpg"
    return draw(browser, model, window, variables, answer, image, tuple(LEVEL_COLORS.values()))


@pytest.fixture(scope="module")
def alarms(influxdb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alarms]:
    now = int(time.time())
    folder = tmp_path_factory.mktemp("alarm_panels")
    with fresh_database(influxdb_url) as url:
        asyncio.run(_write(url, now))
        parts = urllib.parse.urlsplit(url)
        run = LineRun(f"http://{parts.netloc}", parts.path.strip("/"), 0, 0)
        with chromium() as browser:
            drawn = {
                name: _draw(browser, run, name, now, folder)
                for name in ("line-overview.json", "machine-detail.json")
            }
        yield Alarms(now, drawn)


def _table(drawn: Drawn, title: str) -> list[dict[str, Any]]:
    """The rows of a drawn table: column name -> (value, text, colour)."""
    (frame,) = drawn.panel(title)["frames"]
    columns = {f["displayName"]: f for f in frame["fields"]}
    return [
        {name: (f["values"][i], f["texts"][i], f["colors"][i]) for name, f in columns.items()}
        for i in range(frame["length"])
    ]


@pytest.mark.parametrize(
    ("name", "machine"), [("line-overview.json", ""), ("machine-detail.json", "conveyor")]
)
def test_active_alarms_are_exactly_the_active_conditions(
    alarms: Alarms, name: str, machine: str
) -> None:
    """Level in its colour, source, condition, message, since the latest raise, acked; no
    cleared alarm, none of another line or (per machine) of another machine, none that clears
    only after the end of the range counted as cleared."""
    drawn = alarms.drawn[name]
    assert drawn.errors == []
    assert [c for c in drawn.clipped if "larm" in c["panel"]] == []  # no text cut off
    rows = _table(drawn, "Active alarms")
    truth = {e.condition: e for e in active_at(LINE, machine)}
    assert sorted(row["condition"][0] for row in rows) == sorted(truth)
    for row in rows:
        event = truth[row["condition"][0]]
        level = opcua_severity_level(event.severity)
        assert row["level"][1] == level.name.lower()
        assert row["level"][2] == drawn.colors[LEVEL_COLORS[level]]
        assert row["source"][0] == event.machine
        assert row["message"][0] == event.message
        assert row["since"][0] == (alarms.now + raised(event)) * 1000
        assert row["acked"][1] == ("yes" if event.acked else "no")
        assert ("machine" in row) == (not machine)


@pytest.mark.parametrize(
    ("name", "machine"), [("line-overview.json", ""), ("machine-detail.json", "conveyor")]
)
def test_the_journal_lists_every_event_of_the_range_newest_first(
    alarms: Alarms, name: str, machine: str
) -> None:
    rows = _table(alarms.drawn[name], "Alarm journal")
    expected = sorted(
        (
            e
            for e in TIMELINE
            if -WINDOW_S <= e.at <= 0 and e.line == LINE and machine in ("", e.machine)
        ),
        key=lambda e: -e.at,
    )
    assert [row["at"][0] for row in rows] == [(alarms.now + e.at) * 1000 for e in expected]
    assert [(row["condition"][0], row["active"][1], row["acked"][1]) for row in rows] == [
        (e.condition, "ACTIVE" if e.active else "cleared", "yes" if e.acked else "no")
        for e in expected
    ]
    assert [row["comment"][0] for row in rows] == [e.comment for e in expected]


def test_the_overview_counts_the_active_alarms_per_level_in_its_colour(alarms: Alarms) -> None:
    drawn = alarms.drawn["line-overview.json"]
    levels = Counter(opcua_severity_level(e.severity) for e in active_at(LINE))
    tiles = drawn.panel("Active alarms per level")["values"]
    assert {t["title"]: t["numeric"] for t in tiles} == {
        level.name.lower(): count for level, count in levels.items()
    }
    for tile in tiles:
        level = SeverityLevel[tile["title"].upper()]
        assert tile["color"] == drawn.colors[LEVEL_COLORS[level]], tile
