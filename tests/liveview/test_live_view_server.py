"""The live view's server over a real socket, on SQLite and on a real InfluxDB alike.

The historian holds a few seconds of a line as the parts write it (telemetry, anomaly points,
an injected fault and the episode that flagged it, a false alarm, connector health); the JSON
the page draws from must say the same on both backends, in the data model's conventions (state
names, units, severity), and the page and its assets must come from the server itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from core.sample import Point, Quality, Sample
from core.schema import MachineState
from historian import Historian, open_historian
from liveview.server import LiveView
from testbed.influxd import free_port

SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]

NS = 1_000_000_000
LINE = {"site": "demo", "line": "line1"}


def telemetry(now_ns: int) -> list[Sample]:
    def sample(machine: str, signal: str, value: float, ts: int, quality: Quality) -> Sample:
        return Sample("line1", machine, signal, value, quality, ts, site="demo")

    samples = []
    for second in range(5):
        ts = now_ns - (5 - second) * NS
        samples += [
            sample("conveyor", "state", MachineState.RUNNING, ts, Quality.GOOD),
            sample("conveyor", "speed_hz", 50.0 - second, ts, Quality.GOOD),
            sample("pasteurizer", "state", MachineState.FAULTED, ts, Quality.GOOD),
            sample("pasteurizer", "flow_lph", 9000.0 + second, ts, Quality.GOOD),
        ]
    samples.append(sample("conveyor", "current_a", 0.0, now_ns - NS, Quality.BAD))
    return samples


def points(now_ns: int) -> list[Point]:
    def event(machine: str, kind: str, ago_s: float, **fields: object) -> Point:
        tags = {**LINE, "machine": machine, "kind": kind}
        return Point("events", tags, fields, now_ns - int(ago_s * NS))  # type: ignore[arg-type]

    def connector(name: str, ago_s: float, samples: int) -> Point:
        fields = {
            "connected": True,
            "samples": samples,
            "errors": 0,
            "reconnects": 0,
            "spool_bytes": 1300,
            "spool_dropped": 2,
        }
        return Point(
            "connector",
            {"connector": name, "endpoint": "modbus://plc:502"},
            fields,
            now_ns - int(ago_s * NS),
        )

    return [
        event("conveyor", "fault", 60, text="conveyor_jam started on conveyor", active=True),
        event(
            "conveyor",
            "anomaly",
            56,
            text="anomaly on conveyor",
            active=True,
            top_signal="speed_hz",
            peak_severity=3.0,
        ),
        event("conveyor", "fault", 20, text="conveyor_jam ended on conveyor", active=False),
        event(
            "filler",
            "anomaly",
            30,
            text="anomaly on filler",
            active=True,
            top_signal="fill_rate_bpm",
            peak_severity=1.5,
        ),
        event(
            "filler",
            "anomaly",
            10,
            text="episode closed",
            active=False,
            top_signal="fill_rate_bpm",
            peak_severity=2.5,
            duration_s=20.0,
        ),
        Point(
            "anomaly",
            {**LINE, "machine": "conveyor", "detector": "pca"},
            {
                "score": 981_831.0,
                "threshold": 100_000.0,
                "severity": 9.81831,
                "is_anomaly": True,
                "top_signal": "speed_hz",
            },
            now_ns - 2 * NS,
        ),
        connector("line1-modbus", 12, 1000),
        connector("line1-modbus", 2, 1370),
    ]


@pytest.fixture
async def historian(historian_url: str) -> AsyncIterator[Historian]:
    async with open_historian(historian_url) as opened:
        now = time.time_ns()
        await opened.write_samples(telemetry(now))
        await opened.write_points(points(now))
        yield opened


async def get(url: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response


async def get_json(url: str) -> dict:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]


async def test_the_overview_shows_states_severity_and_values_in_line_order(
    historian: Historian,
) -> None:
    async with LiveView(historian, machines=["pasteurizer", "conveyor"]) as view:
        body = await get_json(f"{view.url}api/overview")
    assert [m["name"] for m in body["machines"]] == ["pasteurizer", "conveyor"]
    pasteurizer, conveyor = body["machines"]
    assert pasteurizer["state"] == "faulted"
    assert conveyor["state"] == "running"
    assert conveyor["anomaly"] is True
    assert conveyor["top_signal"] == "speed_hz"
    assert conveyor["severity"] == pytest.approx(9.81831)  # the bounded scale, not the score
    assert "score" not in str(body)
    assert conveyor["level"] == "critical"
    assert pasteurizer["severity"] is None  # nothing scored lately
    signals = {s["signal"]: s for s in conveyor["signals"]}
    assert signals["speed_hz"]["value"] == 46.0
    assert signals["speed_hz"]["unit"] == "Hz"
    assert signals["current_a"]["quality"] == "bad"
    assert {s["unit"] for s in pasteurizer["signals"] if s["signal"] == "flow_lph"} == {"L/h"}


async def test_each_fault_stands_beside_the_episode_it_caused(historian: Historian) -> None:
    async with LiveView(historian) as view:
        rows = (await get_json(f"{view.url}api/overview"))["ground_truth"]
    assert [(r["fault"] is not None, r["episode"]["machine"]) for r in rows] == [
        (True, "conveyor"),  # the jam, flagged 4 s after it began
        (False, "filler"),  # an episode no fault explains
    ]
    jam, false_alarm = rows
    assert jam["delay_s"] == pytest.approx(4.0, abs=0.01)
    assert jam["episode"]["top_signal"] == "speed_hz"
    assert jam["episode"]["end"] is None  # still open
    assert jam["fault"]["end"] - jam["fault"]["start"] == pytest.approx(40.0, abs=0.01)
    assert false_alarm["episode"]["peak_severity"] == 2.5  # from the closing event


async def test_connectors_show_samples_per_second_spool_and_losses(historian: Historian) -> None:
    async with LiveView(historian) as view:
        (modbus,) = (await get_json(f"{view.url}api/overview"))["connectors"]
    assert modbus["samples_per_s"] == pytest.approx(37.0, rel=0.01)
    assert (modbus["spool_bytes"], modbus["spool_dropped"], modbus["connected"]) == (1300, 2, True)


async def test_trends_come_whole_first_then_only_what_is_new(historian: Historian) -> None:
    async with LiveView(historian) as view:
        first = await get_json(f"{view.url}api/trend?machine=conveyor")
        speed = first["series"]["speed_hz"]
        assert speed["unit"] == "Hz"
        assert speed["v"] == [50.0, 49.0, 48.0, 47.0, 46.0]
        assert first["series"]["current_a"]["v"] == [None]  # a bad sample is a gap
        later = await get_json(f"{view.url}api/trend?machine=conveyor&after={first['until']}")
        assert later["series"] == {}
        bad = await get(f"{view.url}api/trend?machine=conveyor&after=yesterday")
        assert bad.status == 400


async def test_the_page_and_its_assets_come_from_the_server_itself(historian: Historian) -> None:
    async with LiveView(historian) as view:
        page = await get(view.url)
        async with aiohttp.ClientSession() as session, session.get(view.url) as response:
            html = await response.text()
        for asset in ("/assets/app.js", "/assets/style.css", "/assets/vendor/uPlot.iife.min.js"):
            assert f'"{asset}"' in html
            assert (await get(f"{view.url}{asset[1:]}")).status == 200
        assert (await get(f"{view.url}assets/../server.py")).status in {403, 404}
    assert "://" not in html  # no CDN: nothing is loaded from elsewhere
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


class CountingReads:
    """Counts the historian reads the view makes (the writes and everything else pass through)."""

    def __init__(self, historian: Historian) -> None:
        self.historian = historian
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self.historian, name)
        if name in {"latest", "points"}:
            self.reads += 1
        return attribute


async def test_nobody_looking_costs_no_historian_reads_and_tabs_share_them(
    historian: Historian,
) -> None:
    counting = CountingReads(historian)
    async with LiveView(counting, machines=()) as view:  # type: ignore[arg-type]
        await asyncio.sleep(2.5)
        assert counting.reads == 0
        await asyncio.gather(*(get_json(f"{view.url}api/overview") for _ in range(5)))
    assert counting.reads == 5  # one overview: latest values, anomaly, events, connectors, alarms


def test_connect_serves_the_view_when_asked(tmp_path: Path) -> None:
    """`connect --view` next to real PLCs (here the simulator in its own process) prints the
    URL, and the page shows its connectors from the historian it writes."""
    opcua, modbus = str(free_port()), str(free_port())
    config = tmp_path / "line.yaml"
    config.write_text(
        subprocess.run(
            [*SHOPFLOOR, "sim-config", "--opcua-port", opcua, "--modbus-port", modbus],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    historian = ("--historian", f"sqlite:{tmp_path / 'line.db'}")
    sim = subprocess.Popen(
        [*SHOPFLOOR, "sim", *historian, "--opcua-port", opcua, "--modbus-port", modbus],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    connect = subprocess.Popen(
        [*SHOPFLOOR, "connect", "--config", str(config), *historian, "--view",
         "--spool", str(tmp_path / "spool"), "--duration", "60s"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert connect.stdout is not None
        url = _printed_url(connect.stdout)
        connectors: list[dict[str, object]] = []
        for _ in range(60):
            with urllib.request.urlopen(f"{url}api/overview", timeout=10) as response:
                connectors = json.load(response)["connectors"]
            if len(connectors) == 2 and all(c["samples"] for c in connectors):
                break
            time.sleep(1)
        assert {c["name"] for c in connectors} == {"line1-opcua", "line1-modbus"}
        assert all(c["connected"] for c in connectors)
    finally:
        for process in (connect, sim):
            process.terminate()
            process.wait(30)


def _printed_url(out: IO[str]) -> str:
    for line in out:
        if line.startswith("live view: "):
            return line.removeprefix("live view: ").strip()
    raise AssertionError("connect --view printed no URL")


def test_a_view_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text(
        subprocess.run([*SHOPFLOOR, "sim-config"], capture_output=True, text=True).stdout
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*SHOPFLOOR, "connect", "--config", str(config), "--view", "--view-port", str(port),
             "--historian", f"sqlite:{tmp_path / 'line.db'}", "--spool", str(tmp_path / "spool"),
             "--duration", "5s"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot serve the live view on 127.0.0.1:{port}" in done.stderr
    assert "--view-port" in done.stderr and "Traceback" not in done.stderr
