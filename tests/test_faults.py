"""No sample lost: the outages of a plant, made real and checked sample by sample.

InfluxDB is a real influxd of each test's own (stopped and started again on the same ports and
data folder, as an upgrade does); the connector runs in this process or as a `shopfloor connect`
process killed with SIGKILL; the PLCs are the simulator's servers on loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from bench.linefiles import write_line
from connectors.agent import Agent
from connectors.config import parse_config
from historian.influx_v1 import InfluxV1Historian
from historian.influxd import Influxd, free_port
from historian.sample import Sample
from historian.spool import Batch, Spool
from historian.writer import HistorianWriter
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpec
from shopfloor.simconfig import sim_connectors
from tests.eventually import eventually
from tests.historian.test_spool import read_only
from tests.test_line import running

pytestmark = pytest.mark.influxdb
SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]
FAST_TICK_S = 0.05  # two copies of the line at 20 ticks/s: about 2,000 samples/s
Key = tuple[str, str, str, str, int]


class RestartableInfluxd(Influxd):
    """An influxd that can be stopped and started again on its ports and data folder."""

    def halt(self) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._proc = None

    def resume(self) -> None:
        assert self._tmp is not None and self._proc is None
        root = Path(self._tmp.name)
        with (root / "influxd.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "-config", str(root / "influxdb.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(root / "influxd.log")


@pytest.fixture
def influxd() -> Iterator[RestartableInfluxd]:
    with RestartableInfluxd() as server:
        yield server


@pytest.fixture
def fast_line(tmp_path: Path) -> LineSpec:
    return write_line(tmp_path, line="fast", copies=2, tick_s=FAST_TICK_S)[1]


def key(sample: Sample) -> Key:
    return (sample.site, sample.line, sample.machine, sample.signal, sample.source_ts)


async def stored_keys(url: str, database: str, before_ns: int | None = None) -> set[Key]:
    async with InfluxV1Historian(url, database) as historian:
        points = await historian.points("telemetry", end_ns=before_ns)
    return {
        (p.tags["site"], p.tags["line"], p.tags["machine"], p.tags["signal"], p.ts) for p in points
    }


def connectors_file(spec: LineSpec, folder: Path, opcua_port: int, modbus_port: int) -> Path:
    config = sim_connectors(spec, "127.0.0.1", opcua_port, modbus_port)
    for entry in config["connectors"]:
        entry["reconnect"] = {"min_s": 0.2, "max_s": 0.5}
        if entry["type"] == "opcua":
            entry["security"] = "none"
    path = folder / "connectors.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def simulator(fast_line: LineSpec) -> AsyncIterator[tuple[int, int]]:
    """The fast line's servers on free ports: (OPC UA port, Modbus port)."""
    opcua_port, modbus_port = free_port(), free_port()
    ready = asyncio.Event()
    sim = run_simulator(
        fast_line,
        seed=3,
        opcua=("127.0.0.1", opcua_port),
        modbus=("127.0.0.1", modbus_port),
        ready=ready,
    )
    async with running(sim):
        await asyncio.wait_for(ready.wait(), 10)
        yield opcua_port, modbus_port


async def test_an_influxdb_restart_loses_no_sample(
    influxd: RestartableInfluxd,
    fast_line: LineSpec,
    simulator: tuple[int, int],
    tmp_path: Path,
) -> None:
    historian = InfluxV1Historian(influxd.url, "faults")
    spool = Spool(tmp_path / "spool")
    writer = HistorianWriter(historian, spool=spool, flush_interval_s=0.1, retry_max_s=0.5)
    config = parse_config(
        connectors_file(fast_line, tmp_path, *simulator).read_text(), Path("fast.yaml")
    )
    taken: list[Sample] = []
    agent = Agent(config.build_inputs(), writer, observers=[lambda _i, s: taken.extend(s)])
    async with historian, running(agent.run()):
        await eventually(lambda: writer.stats.samples_written > 2000, "data flowing")
        await asyncio.to_thread(influxd.halt)
        down_at, before = time.monotonic(), len(taken)
        await eventually(lambda: writer.stats.retries >= 2, "failing writes")
        await asyncio.sleep(4)
        outage_rate = (len(taken) - before) / (time.monotonic() - down_at)
        held = spool.stats.samples
        await asyncio.to_thread(influxd.resume)
        await eventually(lambda: spool.stats.samples < 1000, "the spool to drain", 30)
    assert outage_rate >= 1000, f"only {outage_rate:.0f} samples/s during the outage"
    assert held >= 4 * 1000, "the outage data was held in the spool"
    assert spool.stats.dropped_samples == 0 and writer.stats.rejected == 0
    assert spool.stats.samples == 0
    expected = {key(s) for s in taken}
    assert await stored_keys(influxd.url, "faults") == expected


def health(port: int) -> dict[str, object]:
    """The /health body, also when it answers 503 (no PLC connected)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as answer:
        assert answer.code == 503
        return json.loads(answer.read())  # type: ignore[no-any-return]


async def wait_health(port: int, what: str, check: object, timeout_s: float = 20) -> dict:
    """Poll /health until `check(body)` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = await asyncio.to_thread(health, port)
            if check(body):  # type: ignore[operator]
                return body
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def connect(config: Path, spool: Path, historian: str, health_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *SHOPFLOOR,
            "connect",
            "--config",
            str(config),
            "--spool",
            str(spool),
            "--historian",
            historian,
            "--health-port",
            str(health_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_connector_killed_with_sigkill_loses_nothing_it_had_taken(
    influxd: RestartableInfluxd,
    fast_line: LineSpec,
    simulator: tuple[int, int],
    tmp_path: Path,
) -> None:
    config = connectors_file(fast_line, tmp_path, *simulator)
    spool_dir = tmp_path / "spool"
    down = f"influxdb://127.0.0.1:{free_port()}/faults"  # the historian is unreachable
    port = free_port()
    first = connect(config, spool_dir, down, port)
    try:
        before = await wait_health(
            port, "2,000 samples spooled", lambda b: b["spool"]["spooled_samples"] >= 2000
        )
        first.send_signal(signal.SIGKILL)
        killed_ns = time.time_ns()
        first.wait(10)
    finally:
        first.kill()
        first.communicate()
    spool = Spool(spool_dir)  # what the killed process had acknowledged, as it left it
    await spool.open()
    on_disk = Batch()
    while batch := await spool.take(10_000):
        if not batch.samples and not batch.points:
            break
        on_disk.extend(batch)
    await spool.close()
    assert len(on_disk.samples) >= before["spool"]["spooled_samples"]  # type: ignore[index]

    # Restarted against the live historian, with the PLCs gone: it only delivers the spool.
    dead_plcs = connectors_file(fast_line, tmp_path, free_port(), free_port())
    second = connect(dead_plcs, spool_dir, f"influxdb://{influxd.url[7:]}/faults", port)
    try:
        await wait_health(port, "the spool to drain", lambda b: b["spool"]["samples"] == 0)
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=30)
    assert "Traceback" not in err
    assert await stored_keys(influxd.url, "faults", killed_ns) == {key(s) for s in on_disk.samples}


def test_a_read_only_spool_folder_stops_with_a_message_or_runs_in_memory(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "connectors:\n- type: modbus\n  name: m\n  url: modbus://127.0.0.1:1\n"
        "  devices: [{unit: 1, machine: m,\n"
        "             tags: [{signal: s, table: holding, address: 1, type: uint16}]}]\n"
    )
    with read_only(tmp_path / "ro") as folder:
        common = ["connect", "--config", str(config), "--spool", str(folder / "spool")]
        db = ["--historian", f"sqlite:{tmp_path / 'h.db'}", "--duration", "2s"]
        stopped = subprocess.run(
            [*SHOPFLOOR, *common, *db], capture_output=True, text=True, timeout=60
        )
        degraded = subprocess.run(
            [*SHOPFLOOR, *common, *db, "--memory-only-on-spool-error"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert stopped.returncode == 2
    assert "error: cannot use the spool folder" in stopped.stderr
    assert "--memory-only-on-spool-error" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert degraded.returncode == 0, degraded.stderr
    assert "continuing in memory only" in degraded.stderr
