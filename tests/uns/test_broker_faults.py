"""No sample lost on the way edge -> Mosquitto -> ingest workers -> InfluxDB, whatever fails.

Two edge connectors (the simulated line's OPC UA PLCs on one, its Modbus devices on the other)
publish Sparkplug B to a real Mosquitto; three `shopfloor ingest` processes share one
subscription and write to a real influxd. Mid-run one worker is killed with SIGKILL (and
started again by its "supervisor"), the broker is restarted, and the historian behind the
workers is stopped and started. Every sample the edges took is then in InfluxDB, compared by
series and timestamp (milliseconds: Sparkplug's resolution), and the independent Sparkplug host
saw no rule broken. The edges publish with `ingest=historians`: Mosquitto 2.0 does not keep
shared subscriptions over its restart, and without it what the edges published before the
workers had subscribed again was acknowledged by the broker and reached no worker.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.config import parse_config
from core.sample import Sample
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian.influx_v1 import InfluxV1Historian
from plc_sim.spec import LineSpec
from testbed.influxd import Influxd
from testbed.mosquitto import Mosquitto
from tests.e2e.test_faults import connectors_file, fast_line, simulator  # noqa: F401 (fixtures)
from tests.e2e.test_line import running
from tests.eventually import eventually
from tests.uns.conftest import sparkplug_host
from uns.broker import open_broker
from uns.publisher import MqttPublisher

pytestmark = [pytest.mark.influxdb, pytest.mark.mosquitto]
SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]
GROUP = "faults"
SHARE = "historians"
Key = tuple[str, str, str, str, int]
Edge = tuple[Agent, HistorianWriter, MqttPublisher]


@pytest.fixture
def influxd() -> Iterator[Influxd]:
    with Influxd() as server:
        yield server


def ms_key(s: Sample) -> Key:
    return (s.site, s.line, s.machine, s.signal, s.source_ts // 1_000_000)


async def stored(influxd: Influxd) -> dict[Key, dict[str, object]]:
    async with InfluxV1Historian(influxd.url, "faults") as historian:
        points = await historian.points("telemetry")
    return {
        (
            p.tags["site"],
            p.tags["line"],
            p.tags["machine"],
            p.tags["signal"],
            p.ts // 1_000_000,
        ): dict(p.fields)
        for p in points
    }


class Worker:
    """One `shopfloor ingest` process; its MQTT client id (its session) survives restarts."""

    def __init__(self, name: str, broker_url: str, influxd: Influxd, folder: Path) -> None:
        self.name = name
        self.command = [
            *SHOPFLOOR,
            "--log-level",
            "info",
            "ingest",
            "--from",
            f"{broker_url}?group={GROUP}&share={SHARE}",
            "--client-id",
            name,
            "--historian",
            influxd.url.replace("http://", "influxdb://") + "/faults",
            "--spool",
            str(folder / name),
        ]
        self.log = folder / f"{name}.log"
        self.out = folder / f"{name}.out"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with self.log.open("a") as log, self.out.open("a") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=log)

    def sessions(self) -> int:
        """How many times it has subscribed (its log at level info says so)."""
        return self.log.read_text().count(f"ingesting as {self.name}")

    def historian_failures(self) -> int:
        return self.log.read_text().count("historian write failed")

    def marked_bad(self) -> int:
        """Signals it marked bad on an NDEATH or DDEATH (its log says how many each time)."""
        return sum(map(int, re.findall(r"(\d+) signals marked bad", self.log.read_text())))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (a clean stop); returns the samples it stored, from its summary line."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        found = re.search(r"stored (\d+) samples", self.out.read_text().splitlines()[-1])
        return int(found.group(1)) if found else -1

    def discard(self) -> None:
        """After the test: none left running, whatever failed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def workers(mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path) -> Iterator[list[Worker]]:
    made = [Worker(f"worker{n}", mosquitto.url, influxd, tmp_path) for n in (1, 2, 3)]
    yield made
    for worker in made:
        worker.discard()


def written(edges: list[Edge]) -> list[int]:
    return [writer.stats.samples_written for _, writer, _ in edges]


@pytest.mark.timeout(150)  # four worker starts and two broker starts on a busy 2-core machine
async def test_nothing_acknowledged_is_lost_through_broker_and_workers(
    influxd: Influxd,
    mosquitto: Mosquitto,
    fast_line: LineSpec,  # noqa: F811
    simulator: tuple[int, int],  # noqa: F811
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    config = parse_config(
        connectors_file(fast_line, tmp_path, *simulator).read_text(),
        Path("fast.yaml"),
    )
    inputs = config.build_inputs()
    taken: list[Sample] = []
    edges: list[Edge] = []
    for node, protocol in (("edge-opcua", "opc.tcp"), ("edge-modbus", "modbus")):
        url = f"{mosquitto.url}?group={GROUP}&node={node}&ingest={SHARE}"
        publisher = MqttPublisher(open_broker(url), timeout_s=5.0)
        writer = HistorianWriter(
            publisher,
            spool=Spool(tmp_path / node),
            flush_interval_s=0.1,
            retry_min_s=0.2,
            retry_max_s=1.0,
        )
        mine = [i for i in inputs if i.endpoint.startswith(protocol)]
        assert mine, f"no {protocol} input in {[i.endpoint for i in inputs]}"
        agent = Agent(mine, writer, observers=[lambda _i, s: taken.extend(s)])
        edges.append((agent, writer, publisher))
    for worker in workers:
        worker.start()
    # The first start makes their persistent sessions; from then on the broker keeps their share.
    await eventually(lambda: all(w.sessions() for w in workers), "workers subscribed", 60)

    async def flowing(what: str) -> None:
        """Until both edges have delivered more to the broker (and the workers took it)."""
        before = written(edges)
        await eventually(
            lambda: all(a > b for a, b in zip(written(edges), before, strict=True)), what, 60
        )

    with sparkplug_host(mosquitto, tmp_path) as report:
        async with running(*(agent.run() for agent, _, _ in edges)):
            await flowing("data flowing")
            await asyncio.to_thread(workers[1].kill)  # with messages in flight to it
            await flowing("data flowing to the two workers left")
            workers[1].start()  # its supervisor brings it back: same client id, same session
            await eventually(lambda: workers[1].sessions() == 2, "the worker back", 60)
            await asyncio.to_thread(mosquitto.restart)  # SIGTERM: it saves its sessions
            await flowing("the edges back after the broker restart")
            failed = {w.name: w.historian_failures() for w in workers}
            await asyncio.to_thread(influxd.halt)
            await eventually(
                lambda: all(w.historian_failures() > failed[w.name] for w in workers),
                "every worker spooling while the historian is down",
                60,
            )
            await asyncio.to_thread(influxd.resume)
            await flowing("data flowing after the historian is back")
        # The edges stopped (their inputs first, then the writers drained to the broker).
        for _, writer, publisher in edges:
            assert writer.stats.spool.samples == 0, "every sample taken reached the broker"
            assert writer.stats.rejected == 0
            await publisher.close()
        expected = {ms_key(s) for s in taken}
        series = {key[:4] for key in expected}
        have: set[Key] = set()
        deaths: dict[Key, dict[str, object]] = {}

        async def all_stored() -> bool:
            """Every sample taken, and the edges' NDEATHs: every series marked bad once."""
            nonlocal have, deaths
            fields = await stored(influxd)
            have = set(fields)
            deaths = {key: fields[key] for key in have - expected}
            return have >= expected and {key[:4] for key in deaths} >= series

        for _ in range(120):  # the workers drain their spools; what is missing is said below
            if await all_stored():
                break
            await asyncio.sleep(0.5)
    counts = [await asyncio.to_thread(w.stop) for w in workers]
    missing = expected - have
    assert not missing, f"{len(missing)} of {len(expected)} samples lost, e.g. {min(missing)}"
    # and nothing that was not taken but the bad markers of the deaths the workers received
    assert all(f == {"quality": 2} for f in deaths.values()), "a death marker with a value"
    assert len(deaths) == sum(w.marked_bad() for w in workers)
    assert all(c > 0 for c in counts), f"samples stored per worker: {counts}"
    assert report["violations"] == []
    for node in ("edge-opcua", "edge-modbus"):
        assert report["bd_seq"][f"{GROUP}/{node}"] >= 1, "a new session after the restart"
    assert report["kinds"]["NDEATH"] >= 2  # the clean stops


def start_edge(config: Path, broker_url: str, folder: Path) -> subprocess.Popen[bytes]:
    command = [*SHOPFLOOR, "--log-level", "info", "connect", "--config", str(config)]
    with (folder / "edge.log").open("w") as log:
        return subprocess.Popen(
            [*command, "--publish", broker_url, "--spool", "spool"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def test_a_killed_edge_leaves_its_ndeath_will_with_its_bdseq(
    mosquitto: Mosquitto,
    fast_line: LineSpec,  # noqa: F811
    simulator: tuple[int, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    """`shopfloor connect --publish` only (no historian): SIGKILL, and the broker sends its will."""
    config = connectors_file(fast_line, tmp_path, *simulator)
    with sparkplug_host(mosquitto, tmp_path) as report:
        edge = start_edge(config, f"{mosquitto.url}?group={GROUP}&node=killed", tmp_path)
        try:
            await eventually(
                lambda: "Sparkplug bdSeq 0" in (tmp_path / "edge.log").read_text(), "edge up", 60
            )
            await asyncio.sleep(1)
        finally:
            edge.send_signal(signal.SIGKILL)
            edge.wait(timeout=10)
    assert report["violations"] == []
    assert report["kinds"]["NBIRTH"] == 1 and report["kinds"]["DDATA"] > 0
    assert report["kinds"]["NDEATH"] == 1  # the will, matching bdSeq 0 (else a violation)
    assert report["bd_seq"] == {f"{GROUP}/killed": 0}
