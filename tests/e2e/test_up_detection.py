"""`shopfloor up` catches an injected fault: real sim servers, connectors, InfluxDB, detector.

A line file schedules a conveyor jam (abrupt) into a short run; `up` trains its models on a
simulated fault-free run of another seed (its models folder starts empty), and must write
`anomaly` points that flag the conveyor soon after the fault's ground-truth event, an anomaly
episode in `events` naming the conveyor's current, and nothing flagged before the fault.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml

from core.sample import Point
from historian import open_historian
from plc_sim.spec import DEFAULT_LINE, load_line
from testbed.influxd import free_port
from tests.conftest import fresh_database

FAULT_AT_S = 30.0
RUN_S = 50
# The online path adds to the detector's own delay: samples reach the historian within a poll,
# windows are scored `lag_s` (2 s) late and once a second.
ONLINE_SLACK_S = 5.0
ABRUPT_DELAY_S = 5.0
JAM_SIGNALS = {"current_a", "speed_hz"}  # a stalled drive: current at its limit, speed down


@pytest.fixture(scope="module")
def jammed_run(
    tmp_path_factory: pytest.TempPathFactory, influxdb_url: str
) -> Iterator[tuple[str, str]]:
    """(historian URL, what it printed) of one `up` run with a conveyor jam at FAULT_AT_S."""
    folder = tmp_path_factory.mktemp("jam")
    line = yaml.safe_load(DEFAULT_LINE.read_text())
    line["faults"] = [
        {
            "at_s": FAULT_AT_S,
            "machine": "conveyor",
            "fault": "conveyor_jam",
            "severity": 1.0,
            "duration_s": 60,
        }
    ]
    (folder / "line.yaml").write_text(yaml.safe_dump(line))
    with fresh_database(influxdb_url) as url:
        up = subprocess.run(
            [
                *(sys.executable, "-m", "shopfloor.cli", "up"),
                *("--line", str(folder / "line.yaml"), "--duration", f"{RUN_S}s"),
                *("--opcua-port", str(free_port()), "--modbus-port", str(free_port())),
                *("--models", str(folder / "models"), "--spool", str(folder / "spool")),
            ],
            capture_output=True,
            text=True,
            timeout=RUN_S + 90,
            env={**os.environ, "SHOPFLOOR_HISTORIAN": url},
        )
        assert up.returncode == 0, up.stderr
        yield url, up.stderr + up.stdout


async def points(url: str, measurement: str, **tags: str) -> list[Point]:
    async with open_historian(url) as historian:
        return await historian.points(measurement, tags=tags)


async def fault_start_ns(url: str) -> int:
    events = await points(url, "events", kind="fault", machine="conveyor")
    return next(e.ts for e in events if e.fields["active"])


def test_up_trains_its_models_first_and_says_so(jammed_run: tuple[str, str]) -> None:
    _, printed = jammed_run
    assert "training anomaly models" in printed
    assert "Traceback" not in printed


def test_the_live_status_shows_the_anomaly_and_the_summary_counts_it(
    jammed_run: tuple[str, str],
) -> None:
    _, printed = jammed_run
    assert any(f"ANOMALY on conveyor ({signal})" in printed for signal in JAM_SIGNALS)
    assert re.search(r"windows scored, \d+ above threshold, [1-9]\d* episodes", printed)


async def test_every_machine_is_scored_with_its_threshold(jammed_run: tuple[str, str]) -> None:
    url, _ = jammed_run
    scored = await points(url, "anomaly")
    assert {p.tags["machine"] for p in scored} == set(load_line().machines)
    assert all(p.fields["threshold"] > 0 for p in scored)


async def test_the_jam_is_flagged_on_the_conveyor_within_the_abrupt_delay(
    jammed_run: tuple[str, str],
) -> None:
    url, _ = jammed_run
    fault_ns = await fault_start_ns(url)
    conveyor = await points(url, "anomaly", machine="conveyor")
    flagged = [p for p in conveyor if p.fields["is_anomaly"]]
    assert flagged, "the conveyor jam was never flagged"
    delay_s = (flagged[0].ts - fault_ns) / 1e9
    assert 0 <= delay_s <= ABRUPT_DELAY_S + ONLINE_SLACK_S
    assert flagged[0].fields["top_signal"] in JAM_SIGNALS


async def test_nothing_is_flagged_before_the_fault(jammed_run: tuple[str, str]) -> None:
    url, _ = jammed_run
    fault_ns = await fault_start_ns(url)
    early = [
        (p.tags["machine"], p.fields["top_signal"])
        for p in await points(url, "anomaly")
        if p.fields["is_anomaly"] and p.ts < fault_ns
    ]
    assert early == []


async def test_the_first_episode_is_the_conveyors_naming_its_signal(
    jammed_run: tuple[str, str],
) -> None:
    """The jam starves the machines downstream, so they may follow; the conveyor comes first."""
    url, _ = jammed_run
    opened = [e for e in await points(url, "events", kind="anomaly") if e.fields["active"]]
    assert opened, "no anomaly episode was written"
    assert opened[0].tags["machine"] == "conveyor"
    assert any(signal in str(opened[0].fields["text"]) for signal in JAM_SIGNALS)
