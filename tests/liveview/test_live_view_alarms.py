"""PLC alarms in the live view: the server's JSON on SQLite and on a real InfluxDB, and the page
in real chromium, from alarm events as a connector writes them (tests/alarm_events.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from playwright.sync_api import Page, expect

from core.severity import opcua_severity_level
from historian import Historian, open_historian
from liveview.server import LiveView
from liveview.snapshot import JOURNAL_ROWS
from testbed.browser import chromium
from tests.alarm_events import TIMELINE, AlarmEvent, active_at, raised

pytestmark = pytest.mark.timeout(120)
NOW = int(time.time())
STORED = [e for e in TIMELINE if e.at <= 0]  # the view reads the newest stored event: no future


def _row(alarm: AlarmEvent) -> tuple[str, str, str]:
    return (alarm.machine, alarm.condition, alarm.message)


async def _fill(historian: Historian) -> None:
    await historian.write_points([event.point(NOW) for event in STORED])


@pytest.fixture
async def historian(historian_url: str) -> AsyncIterator[Historian]:
    async with open_historian(historian_url) as opened:
        await _fill(opened)
        yield opened


async def test_the_overview_lists_the_active_alarms_and_the_journal(historian: Historian) -> None:
    async with (
        LiveView(historian) as view,
        aiohttp.ClientSession() as session,
        session.get(f"{view.url}api/overview") as response,
    ):
        alarms = (await response.json())["alarms"]
    truth = sorted(active_at(line=None), key=raised, reverse=True)  # newest raise first
    assert [(a["machine"], a["condition"], a["message"]) for a in alarms["active"]] == [
        _row(e) for e in truth
    ]
    for shown, event in zip(alarms["active"], truth, strict=True):
        assert shown["level"] == opcua_severity_level(event.severity).name.lower()
        assert shown["since"] == NOW + raised(event)
        assert shown["acked"] is event.acked
    newest = sorted(STORED, key=lambda e: e.at, reverse=True)[:JOURNAL_ROWS]
    assert [(j["time"], j["condition"], j["active"], j["acked"], j["comment"]) for j in
            alarms["journal"]] == [
        (NOW + e.at, e.condition, e.active, e.acked, e.comment) for e in newest
    ]  # fmt: skip


def _served(url: str, ready: threading.Event, stop: threading.Event, found: list[str]) -> None:
    """The live view on its own event loop in this thread, until `stop` is set."""

    async def serve() -> None:
        async with open_historian(url) as historian:
            await _fill(historian)
            async with LiveView(historian) as view:
                found.append(view.url)
                ready.set()
                await asyncio.to_thread(stop.wait)

    asyncio.run(serve())


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """The page of a live view over a SQLite historian with the alarm events, in chromium."""
    url = f"sqlite:{tmp_path_factory.mktemp('view') / 'line.db'}"
    ready, stop, found = threading.Event(), threading.Event(), []
    server = threading.Thread(target=_served, args=(url, ready, stop, found), daemon=True)
    server.start()
    try:
        assert ready.wait(30), "the live view did not start"
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(found[0])
            yield page
    finally:
        stop.set()
        server.join(10)


def test_the_page_shows_each_active_alarm_in_its_level_colour(page: Page) -> None:
    rows = page.locator("#alarms-active tbody tr")
    truth = sorted(active_at(line=None), key=raised, reverse=True)
    expect(rows).to_have_count(len(truth), timeout=15_000)
    expect(page.locator("#alarms-empty")).to_be_hidden()
    for row, event in zip(rows.all(), truth, strict=True):
        level = opcua_severity_level(event.severity).name.lower()
        expect(row.locator("td.condition")).to_have_text(event.condition)
        expect(row.locator("td.message")).to_have_text(event.message)
        expect(row.locator("td.level .sev")).to_have_text(level)
        colour = row.locator("td.level .sev").evaluate("e => getComputedStyle(e).backgroundColor")
        expected = page.evaluate(
            f"() => {{ const e = document.createElement('i'); e.style.background ="
            f" 'var(--{level})'; document.body.append(e);"
            " const c = getComputedStyle(e).backgroundColor; e.remove(); return c; }"
        )
        assert colour == expected, (event.condition, level)
        expect(row.locator("td.acked")).to_have_text("yes" if event.acked else "no")


def test_the_page_shows_the_newest_journal_entries_with_their_state(page: Page) -> None:
    rows = page.locator("#alarms-journal tbody tr")
    newest = sorted(STORED, key=lambda e: e.at, reverse=True)[:JOURNAL_ROWS]
    expect(rows).to_have_count(len(newest), timeout=15_000)
    states = rows.locator("td.state").all_text_contents()
    assert states == ["ACTIVE" if e.active else "cleared" for e in newest]
    assert rows.locator("td.comment").all_text_contents() == [e.comment for e in newest]
