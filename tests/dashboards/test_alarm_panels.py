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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.sample import Point
from core.schema import EVENTS, EventKind
from core.severity import opcua_severity_level
from dashboards.panels import LEVEL_COLORS
from historian import open_historian
from testbed.browser import chromium
from tests.conftest import fresh_database
from tests.dashboards.conftest import LineRun
from tests.dashboards.grafana_queries import MODELS, Query, absolute_time_filter, expand
from tests.dashboards.grafana_render import Drawn, draw

pytestmark = [pytest.mark.influxdb, pytest.mark.timeout(300)]
NS = 10**9
SITE, LINE = "plant", "L1"
WINDOW_S = 1800  # both dashboards open on the last 30 minutes


@dataclass(frozen=True)
class AlarmEvent:
    """One event of a condition as the PLC reported it, `at` seconds from the drawing time."""

    at: int
    machine: str
    condition: str
    active: bool
    acked: bool
    severity: int
    line: str = LINE
    comment: str = ""

    @property
    def condition_id(self) -> str:
        return f"ns=2;s={self.line}.{self.machine}.{self.condition}"

    def point(self, now: int) -> Point:
        tags = {"site": SITE, "line": self.line, "machine": self.machine, "kind": EventKind.ALARM}
        fields: dict[str, float | int | bool | str] = {
            "text": f"{self.machine} {self.condition}",
            "active": self.active,
            "acked": self.acked,
            "confirmed": False,
            "retain": self.active or not self.acked,
            "source": self.machine,
            "condition": self.condition,
            "condition_id": self.condition_id,
            "alarm_severity": self.severity,
            "severity_level": int(opcua_severity_level(self.severity)),
            "event_id": f"{self.at + 10**6:x}",
            "comment": self.comment,
        }
        return Point(EVENTS.name, tags, fields, (now + self.at) * NS)


TIMELINE = (
    # raised, acknowledged while active: active, acked, since its raise
    AlarmEvent(-600, "conveyor", "Overcurrent", True, False, 850),
    AlarmEvent(-500, "conveyor", "Overcurrent", True, True, 850, comment="belt cleared"),
    # raised, cleared, acknowledged: over
    AlarmEvent(-900, "conveyor", "HighTemperature", True, False, 700),
    AlarmEvent(-800, "conveyor", "HighTemperature", False, False, 700),
    AlarmEvent(-700, "conveyor", "HighTemperature", False, True, 700, comment="ok"),
    # raised and not acknowledged; it clears only after the end of the range
    AlarmEvent(-300, "air_compressor", "LowPressure", True, False, 600),
    AlarmEvent(60, "air_compressor", "LowPressure", False, False, 600),
    # raised, cleared, raised again: active since the second raise
    AlarmEvent(-1500, "pasteurizer", "LowHoldingTemperature", True, False, 900),
    AlarmEvent(-1400, "pasteurizer", "LowHoldingTemperature", False, False, 900),
    AlarmEvent(-200, "pasteurizer", "LowHoldingTemperature", True, False, 900),
    # raised two days ago, long before the time range, and unchanged since
    AlarmEvent(-2 * 86400, "filler", "LowBottleSupply", True, False, 100),
    # another line's machine of the same name
    AlarmEvent(-400, "conveyor", "Overcurrent", True, False, 850, line="L2"),
)


def _active_at(events: tuple[AlarmEvent, ...], line: str, machine: str = "") -> dict[str, Any]:
    """condition -> its newest event up to the drawing time, if that is active (the truth)."""
    newest: dict[str, AlarmEvent] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.at <= 0 and event.line == line and machine in ("", event.machine):
            newest[event.condition_id] = event
    return {e.condition: e for e in newest.values() if e.active}


def _raised(condition: str) -> int:
    """When the condition was raised last before the drawing time (an active, unacked event)."""
    return max(
        e.at
        for e in TIMELINE
        if e.condition == condition and e.line == LINE and e.at <= 0 and e.active and not e.acked
    )


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
    rows = _table(drawn, "Active alarms")
    truth = _active_at(TIMELINE, LINE, machine)
    assert {row["condition"][0] for row in rows} == set(truth)
    assert len(rows) == len(truth)
    for row in rows:
        event = truth[row["condition"][0]]
        level = opcua_severity_level(event.severity)
        assert row["level"][1] == level.name.lower()
        assert row["level"][2] == drawn.colors[LEVEL_COLORS[level]]
        assert row["source"][0] == event.machine
        assert row["message"][0] == f"{event.machine} {event.condition}"
        assert row["since"][0] == (alarms.now + _raised(event.condition)) * 1000
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
