"""Ingest workers sharing a subscription, fed by an independent Sparkplug B edge (pysparkplug,
tests/uns/sparkplug_edge.py) that publishes its DDATA at QoS 0, as Sparkplug requires, through
a real Mosquitto configured as config/mosquitto.conf is (`queue_qos0_messages true`)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian.sqlite import SQLiteHistorian
from testbed.mosquitto import Mosquitto
from tests.e2e.test_line import running
from tests.eventually import eventually
from tests.uns.conftest import SPARKPLUG_PYTHON
from tests.uns.test_sparkplug_types import EDGE, T0_MS
from uns.broker import open_broker
from uns.ingest import MqttIngest

pytestmark = pytest.mark.mosquitto
COUNT = 200  # DDATA of one metric while a worker is away


def worker(
    url: str, name: str, store: SQLiteHistorian, folder: Path, slots: frozenset[str] = frozenset()
) -> tuple[MqttIngest, Agent]:
    """One ingest worker of the share group, writing through its own spool into `store`."""
    writer = HistorianWriter(store, spool=Spool(folder / f"spool-{name}"), flush_interval_s=0.05)
    source = MqttIngest(open_broker(url), writer.put_points, client_id=name, slots=slots)
    return source, Agent([source], writer)


async def good_readings(stores: list[SQLiteHistorian]) -> set[int]:
    """The times of the good Motor_Temperature_c readings all workers stored together."""
    found = set()
    for store in stores:
        for point in await store.points("telemetry", tags={"signal": "Motor_Temperature_c"}):
            if point.fields["quality"] == 0:
                found.add(point.ts)
    return found


async def test_qos0_data_for_a_worker_that_is_away_waits_in_its_session(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    url = f"{mosquitto.url}?group=PlantB&share=hist"
    stores = [SQLiteHistorian(str(tmp_path / f"{n}.db")) for n in ("w1", "w2")]
    w1, agent1 = worker(url, "w1", stores[0], tmp_path)
    w2, agent2 = worker(url, "w2", stores[1], tmp_path)
    async with stores[0], stores[1], running(agent1.run()):
        async with running(agent2.run()):
            await eventually(lambda: w1.stats.connected and w2.stats.connected, "subscribed")
        # w2 is gone (its supervisor restarts it soon): its session and its share stay
        edge = await asyncio.create_subprocess_exec(
            SPARKPLUG_PYTHON,
            EDGE,
            str(mosquitto.port),
            str(T0_MS),
            str(COUNT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert edge.stdin is not None and edge.stdout is not None
        assert (await edge.stdout.readline()).strip() == b"published"
        edge.stdin.write(b"stop\n")
        await edge.stdin.drain()
        assert await asyncio.wait_for(edge.wait(), 10) == 0
        w2, agent2 = worker(url, "w2", stores[1], tmp_path)  # back under its client id
        async with running(agent2.run()):
            expected = 2 + COUNT  # the DBIRTH's value, the first DDATA's, then COUNT more
            for _ in range(200):
                if len(await good_readings(stores)) >= expected:
                    break
                await asyncio.sleep(0.1)
    got = await good_readings_after(stores)
    assert len(got) == expected, f"{expected - len(got)} QoS 0 messages lost"
    assert w2.stats.samples > 0, "the returning worker got its share"


async def good_readings_after(stores: list[SQLiteHistorian]) -> set[int]:
    for store in stores:
        await store.close()
    reopened = [SQLiteHistorian(store.path) for store in stores]
    try:
        return await good_readings(reopened)
    finally:
        for store in reopened:
            await store.close()


async def test_a_worker_outside_the_configured_slots_is_refused_and_reported(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{mosquitto.url}?group=PlantB&share=hist"
    # `shopfloor ingest` with a client id that is not a slot does not start
    refused = ["ingest", "--from", url, "--slots", "ingest-1,ingest-2", "--client-id", "stray"]
    refused += ["--historian", f"sqlite:{tmp_path / 'h.db'}", "--spool", str(tmp_path / "s")]
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shopfloor.cli", *refused],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "--client-id stray is not one of --slots" in run.stderr, (
        run.stderr
    )
    # a stray started without slots (an old command line) is reported by the slotted workers
    store = SQLiteHistorian(str(tmp_path / "w.db"))
    slots = frozenset({"ingest-1", "ingest-2"})
    good, agent = worker(url, "ingest-1", store, tmp_path, slots=slots)
    _, stray_agent = worker(url, "stray", store, tmp_path)
    with caplog.at_level(logging.WARNING, logger="uns.ingest"):
        async with store, running(agent.run()):
            await eventually(lambda: good.stats.connected, "subscribed")
            async with running(stray_agent.run()):
                await eventually(lambda: "worker stray" in good.stats.bad_tags, "stray reported")
    said = [r.getMessage() for r in caplog.records if "stray" in r.getMessage()]
    assert len(said) == 1 and "not one of the configured slots" in said[0], said
