"""No sample lost: the outages of a plant, made real and checked sample by sample.

InfluxDB is a real influxd of each test's own (stopped and started again on the same ports and
data folder, as an upgrade does); the connector runs in this process or as a `shopfloor connect`
process killed with SIGKILL; the PLCs are the simulator's servers on loopback ports, one of
them slow or answering with exceptions (the Modbus server's device faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest
import yaml

from bench.linefiles import write_line
from connectors.config import parse_config
from core.sample import Quality, Sample
from delivery.agent import Agent
from delivery.spool import Batch, Spool
from delivery.writer import HistorianWriter
from historian import open_historian
from historian.influx_v1 import InfluxV1Historian
from plc_sim.chaos import MODBUS_FAULTS, OPCUA_FAULTS, Chaos
from plc_sim.modbus_server import DeviceFault, ModbusServer
from plc_sim.process import Simulator
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpec, load_line
from plc_sim.tags import exposed_tags
from shopfloor.health import HealthServer
from shopfloor.simconfig import sim_connectors
from shopfloor.status import LiveStatus
from testbed.influxd import Influxd, free_port
from tests.delivery.test_spool import read_only, samples
from tests.delivery.test_spool import running as running_spool
from tests.delivery.test_spool_disk import fill, small_disk
from tests.e2e.test_line import running
from tests.eventually import eventually

pytestmark = pytest.mark.influxdb
SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]
FAST_TICK_S = 0.05  # two copies of the line at 20 ticks/s: about 2,000 samples/s
Key = tuple[str, str, str, str, int]


@pytest.fixture
def influxd() -> Iterator[Influxd]:
    with Influxd() as server:
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


def connectors_file(
    spec: LineSpec, folder: Path, opcua_port: int, modbus_port: int, **modbus: object
) -> Path:
    """The connectors file of the simulated line; `modbus` overrides keys of its Modbus entry."""
    config = sim_connectors(spec, "127.0.0.1", opcua_port, modbus_port)
    for entry in config["connectors"]:
        entry["reconnect"] = {"min_s": 0.2, "max_s": 0.5}
        if entry["type"] == "opcua":
            entry["security"] = "none"
        else:
            entry.update(modbus)
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
    influxd: Influxd,
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


SLOW_PLC = "air_compressor"  # Modbus unit 2, behind the same connection as units 1 and 3
PLC_POLL_S = 0.2
PLC_TIMEOUT_S = 0.1  # a timeout fits in the poll period: the other units lose no poll


@contextlib.asynccontextmanager
async def plant(spec: LineSpec, opcua_port: int, modbus_port: int) -> AsyncIterator[ModbusServer]:
    """The line's OPC UA PLCs (the simulator) and its Modbus devices on a server of the test's
    own, fed by a simulator of the same line, so that one device can be made to misbehave."""
    sim = Simulator(spec, seed=5)
    modbus = ModbusServer(spec, host="127.0.0.1", port=modbus_port, on_run=sim.set_running)

    async def feed() -> None:
        while True:
            sim.step(PLC_POLL_S / 2)
            modbus.publish(sim.values())
            await asyncio.sleep(PLC_POLL_S / 2)

    ready = asyncio.Event()
    opcua = run_simulator(
        spec, seed=5, opcua=("127.0.0.1", opcua_port), tick_s=PLC_POLL_S / 2, ready=ready
    )
    await modbus.start()
    try:
        async with running(opcua, feed()):
            await asyncio.wait_for(ready.wait(), 10)
            with frozen_heap():
                yield modbus
    finally:
        await modbus.stop()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect, then keep what lives now (the servers' address space, what earlier tests left)
    out of the collector's full passes: here the PLCs share the connector's process, and a full
    pass over all of it (~0.3-0.9 s late in the suite) would stall them past the 0.1 s timeout."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (DeviceFault(delay_s=1.0), f"no answer in {PLC_TIMEOUT_S} s"),
        (DeviceFault(exception_code=6), "exception 6, server device busy"),
    ],
    ids=["slow", "exceptions"],
)
async def test_a_plc_answering_slowly_or_with_exceptions_affects_only_its_own_tags(
    fault: DeviceFault, reason: str, influx_db_url: str, tmp_path: Path
) -> None:
    spec = load_line()
    ports = free_port(), free_port()
    config = parse_config(
        connectors_file(
            spec,
            tmp_path,
            *ports,
            poll_interval_s=PLC_POLL_S,
            timeout_s=PLC_TIMEOUT_S,
            timeout_max_s=PLC_TIMEOUT_S,  # fixed: a PLC 1 s late does not answer in time
            reconnect={"min_s": 0.5, "max_s": 1.0},
        ).read_text(),
        Path("line.yaml"),
    )
    inputs = config.build_inputs()
    modbus_input = next(i for i in inputs if i.endpoint.startswith("modbus://"))
    good: set[str] = set()
    async with open_historian(influx_db_url) as historian, plant(spec, *ports) as modbus:
        writer = HistorianWriter(historian, spool=Spool(tmp_path / "spool"), flush_interval_s=0.1)
        agent = Agent(
            inputs,
            writer,
            health_interval_s=0.5,
            observers=[lambda _i, b: good.update(s.machine for s in b if s.quality == 0)],
        )
        async with running(agent.run()):
            await eventually(lambda: good >= set(spec.machines), "every machine's tags", 20)
            start = time.time_ns()
            modbus.set_device_fault(SLOW_PLC, fault)
            await asyncio.sleep(3)
            end = time.time_ns()
            _, faulted = HealthServer(inputs, writer, port=0).report()
            modbus.set_device_fault(SLOW_PLC, None)
            good.clear()
            await eventually(lambda: SLOW_PLC in good, "the healed PLC's tags", 5)
            await eventually(lambda: writer.stats.pending == 0, "the writes")
            _, healed = HealthServer(inputs, writer, port=0).report()
        during = await historian.points("telemetry", start_ns=start + 300_000_000, end_ns=end)
        health = await historian.points("connector", start_ns=start, end_ns=end)

    seconds = (end - start) / 1e9 - 0.3
    counts: dict[tuple[str, str], list[int]] = {}
    for point in during:
        key = (point.tags["machine"], point.tags["signal"])
        counts.setdefault(key, [0, 0])[point.fields["quality"] == 0] += 1
    at_rate = 0.8 * seconds / PLC_POLL_S
    for (machine, tag), (bad, ok) in counts.items():
        if machine == SLOW_PLC:
            assert ok == 0 and bad >= at_rate, (tag, bad, ok)
            continue
        assert bad == 0, (machine, tag, bad)
        if spec.machines[machine].protocol == "modbus":  # polled: a sample per poll
            assert ok >= at_rate, (machine, tag, ok)
    assert {m for (m, _), (_, ok) in counts.items() if ok} == set(spec.machines) - {SLOW_PLC}
    # the reason: in the connector's stats and its `connector` points; the endpoint stayed up
    assert (
        modbus_input.stats.last_error.startswith("unit 2 ")
        and reason in modbus_input.stats.last_error
    )
    assert modbus_input.stats.reconnects == 0
    modbus_health = [p for p in health if p.tags["connector"] == modbus_input.name]
    assert modbus_health and all(p.fields["connected"] for p in modbus_health)
    assert modbus_health[-1].fields["errors"] > modbus_health[0].fields["errors"]
    assert all(p.fields["spool_dropped"] == 0 for p in health)
    # /health: not "ok" while tags are bad; how many, and every distinct reason
    (entry,) = [c for c in faulted["connectors"] if c["name"] == modbus_input.name]
    slow_tags = [t for t in exposed_tags(spec) if t.machine == SLOW_PLC]
    assert faulted["status"] == "degraded" and entry["tags_bad"] == len(slow_tags)
    assert entry["errors_now"] and all(reason in e for e in entry["errors_now"])
    assert healed["status"] == "ok"
    assert all(c["tags_bad"] == 0 and c["errors_now"] == [] for c in healed["connectors"])


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
    influxd: Influxd,
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


async def test_a_full_spool_reports_its_drops_alike_everywhere(tmp_path: Path) -> None:
    """InfluxDB unreachable and a small spool: the drops are counted, and the `connector`
    points, /health and the live status all say the same number."""
    spool = Spool(tmp_path / "spool", max_bytes=50_000, segment_bytes=8_000, commit_interval_s=0)
    historian = InfluxV1Historian(f"http://127.0.0.1:{free_port()}", "down")
    writer = HistorianWriter(
        historian, spool=spool, retry_min_s=0.05, retry_max_s=0.1, drain_timeout_s=0.2
    )
    async with historian, running(writer.run()):
        for start in range(0, 30_000, 100):
            await writer.put(samples(100, start))
    dropped = spool.stats.dropped_samples
    assert dropped > 0 and spool.stats.samples + dropped == 30_000
    inputs = parse_config(DEAD_PLC, Path("c.yaml")).build_inputs()
    (point,) = Agent(inputs, writer).health_points()
    assert point.fields["spool_dropped"] == dropped
    assert point.fields["spool_bytes"] == spool.stats.bytes > 0
    _, body = HealthServer(inputs, writer, port=0).report()
    assert body["spool"]["dropped_samples"] == dropped  # type: ignore[index]
    summary = LiveStatus(inputs, writer, historian_name="influxdb").summary()
    assert f", {dropped} samples dropped" in summary and " kB," in summary


DEAD_PLC = (  # a connectors file whose one PLC nobody answers for
    "connectors:\n- type: modbus\n  name: m\n  url: modbus://127.0.0.1:1\n"
    "  devices: [{unit: 1, machine: m,\n"
    "             tags: [{signal: s, table: holding, address: 1, type: uint16}]}]\n"
)


def test_a_read_only_spool_folder_stops_with_a_message_or_runs_in_memory(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(DEAD_PLC)
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


async def test_a_spool_folder_in_use_says_so_without_a_hint_that_does_not_help(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(DEAD_PLC)
    command = [*SHOPFLOOR, "connect", "--config", str(config), "--spool", str(tmp_path / "sp")]
    command += ["--historian", f"sqlite:{tmp_path / 'h.db'}", "--duration", "1s"]
    spool = Spool(tmp_path / "sp")
    await spool.open()  # another process has it
    try:
        busy = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60
        )
    finally:
        await spool.close()
    assert busy.returncode == 2
    assert "is in use by another shopfloor process" in busy.stderr
    assert "--memory-only-on-spool-error" not in busy.stderr


async def test_retries_never_wait_longer_than_the_cap_and_recovery_is_said_once(
    influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """InfluxDB down for much longer than the (small) retry cap: no wait exceeds the cap, one
    line says when it is back, and /health drops the stale error."""
    cap = 0.2
    caplog.set_level(logging.INFO, "delivery.writer")
    random.seed(13)
    historian = InfluxV1Historian(influxd.url, "cap")
    writer = HistorianWriter(
        historian, spool=Spool(tmp_path / "spool"), retry_min_s=0.05, retry_max_s=cap
    )
    inputs = parse_config(DEAD_PLC, Path("c.yaml")).build_inputs()
    async with historian, running(writer.run()):
        await writer.put(samples(100))
        await eventually(lambda: writer.stats.samples_written == 100, "the first write", 30)
        await asyncio.to_thread(influxd.halt)
        await writer.put(samples(100, 100))
        await eventually(lambda: writer.stats.retries >= 20, "20 retries", 30)
        _, failing = HealthServer(inputs, writer, port=0).report()
        await asyncio.to_thread(influxd.resume)
        await eventually(lambda: writer.stats.samples_written == 200, "the held batch", 30)
        _, back = HealthServer(inputs, writer, port=0).report()
    waits = [float(w) for w in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    assert len(waits) >= 20 and max(waits) <= cap
    assert failing["historian"]["last_error"] and not failing["historian"]["historian_ok"]
    assert back["historian"]["last_error"] == "" and back["historian"]["historian_ok"]
    assert caplog.text.count("is back after") == 1


async def test_a_disk_that_fills_up_mid_run_keeps_the_connector_collecting(
    fast_line: LineSpec, simulator: tuple[int, int], tmp_path: Path
) -> None:
    """The spool's file system fills up under a running `shopfloor connect` (a real tmpfs):
    it goes on collecting into memory, says so in one line and on /health, goes back to disk
    when there is room again, and stops cleanly: no traceback, exit 0."""
    config = connectors_file(fast_line, tmp_path, *simulator)
    port = free_port()
    with small_disk(tmp_path / "disk") as disk:
        filler = fill(disk, leave=150_000)
        process = connect(config, disk / "spool", f"sqlite:{tmp_path / 'h.db'}", port)
        try:
            full = await wait_health(
                port, "the spool in memory", lambda b: b["spool"]["memory_only"], 60
            )
            assert "No space left on device" in full["spool"]["last_error"]
            assert process.poll() is None
            filler.unlink()
            back = await wait_health(
                port, "the spool on disk again", lambda b: not b["spool"]["memory_only"], 60
            )
            assert back["spool"]["last_error"] == ""
            assert back["spool"]["dropped_samples"] == 0
            assert back["connectors"][0]["samples"] > full["connectors"][0]["samples"]
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "No space left on device; holding up to" in err
    assert "works again" in err


async def test_spool_damage_is_reported_alike_everywhere(tmp_path: Path) -> None:
    """A damaged record found on start: state.json, the `connector` points and /health all
    carry the same counts (in spool_dropped and spool_unreadable_bytes)."""
    folder = tmp_path / "spool"
    async with running_spool(Spool(folder)) as spool:
        for start in range(0, 1000, 100):
            await spool.put(samples(100, start))
    segment = max(folder.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # in the payload of the last record
    segment.write_bytes(bytes(data))
    writer = HistorianWriter(open_historian(f"sqlite:{tmp_path / 'h.db'}"), spool=Spool(folder))
    await writer.open()
    try:
        stats = writer.stats.spool
        assert stats.dropped_samples == stats.unreadable_samples == 100
        assert stats.unreadable_bytes > 0
        inputs = parse_config(DEAD_PLC, Path("c.yaml")).build_inputs()
        (point,) = Agent(inputs, writer).health_points()
        assert point.fields["spool_dropped"] == 100
        assert point.fields["spool_unreadable_bytes"] == stats.unreadable_bytes
        _, body = HealthServer(inputs, writer, port=0).report()
        assert body["spool"]["unreadable_bytes"] == stats.unreadable_bytes  # type: ignore[index]
        assert body["spool"]["dropped_samples"] == 100  # type: ignore[index]
        state = json.loads((folder / "state.json").read_text())
        assert (state["dropped_samples"], state["unreadable_bytes"]) == (
            100,
            stats.unreadable_bytes,
        )
    finally:
        await writer.spool.close()


# --- chaos: both connectors against a misbehaving simulator ----------------------------------

CHAOS_RECOVERY_S = 6.0  # documented in docs/tests.md: every tag good again within this
CHAOS_MAX_AGE_S = 2.0  # keep-alive, so that constant OPC UA tags show up in every window


@pytest.mark.timeout(150)
async def test_under_chaos_every_tag_recovers_in_time_and_nothing_is_stamped_wrongly(
    tmp_path: Path,
) -> None:
    spec = load_line()
    ports = free_port(), free_port()
    config = yaml.safe_load(connectors_file(spec, tmp_path, *ports).read_text())
    for entry in config["connectors"]:
        entry["timeout_s"] = 2
        if entry["type"] == "opcua":
            entry["max_age_s"] = CHAOS_MAX_AGE_S
        else:
            entry["poll_interval_s"] = 0.2
    inputs = parse_config(yaml.safe_dump(config), tmp_path / "c.yaml").build_inputs()
    arrived: list[tuple[int, Sample]] = []  # (local receipt time, sample)

    def emit_for(_name: str):
        async def emit(batch) -> None:
            now = time.time_ns()
            arrived.extend((now, s) for s in batch)

        return emit

    # a pause longer than the recovery time between faults, so that each recovery is timed
    chaos = Chaos(
        11, every_s=(CHAOS_RECOVERY_S + 0.5, CHAOS_RECOVERY_S + 1.5), lasting_s=(1.0, 2.5), faults=6
    )
    ready = asyncio.Event()
    sim = run_simulator(
        spec,
        seed=4,
        opcua=("127.0.0.1", ports[0]),
        modbus=("127.0.0.1", ports[1]),
        ready=ready,
        chaos=chaos,
    )
    async with running(sim):
        await asyncio.wait_for(ready.wait(), 30)
        tasks = [asyncio.create_task(i.run(emit_for(i.name))) for i in inputs]
        try:
            await eventually(lambda: len(chaos.events) == 6, "six faults", 120)
            await asyncio.sleep(CHAOS_RECOVERY_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    series = {(s.machine, s.signal) for _, s in arrived}
    assert series == {(t.machine, t.signal) for t in exposed_tags(spec)}
    assert {e.kind for e in chaos.events} == set(OPCUA_FAULTS + MODBUS_FAULTS)
    for event in chaos.events:
        deadline = event.end_ns + int(CHAOS_RECOVERY_S * 1e9)
        seen = [(t, s) for t, s in arrived if t <= deadline]
        latest = latest_by_time(s for _, s in seen)
        stale = sorted(k for k, s in latest.items() if s.quality is not Quality.GOOD)
        assert not stale, (event, stale)  # every tag good again within the documented time
    by_series: dict[tuple[str, str], list[tuple[int, Sample]]] = {}
    for received, sample in arrived:
        by_series.setdefault((sample.machine, sample.signal), []).append((received, sample))
    for key_, history in by_series.items():
        marker = None
        for received, sample in history:
            # nothing stamped in the future (a good value "inside" an outage yet to end)
            assert sample.source_ts <= received + 1_000_000_000, (key_, sample)
            if sample.quality is Quality.BAD and math.isnan(sample.value):
                marker = sample
            elif sample.quality is Quality.GOOD and marker is not None:
                # the first good value after a bad marker supersedes it: never stamped earlier
                assert sample.source_ts > marker.source_ts, (key_, marker, sample)
                marker = None


def latest_by_time(samples: Iterable[Sample]) -> dict[tuple[str, str], Sample]:
    """What a historian shows as current: per series the newest point by timestamp."""
    latest: dict[tuple[str, str], Sample] = {}
    for sample in samples:
        k = (sample.machine, sample.signal)
        if k not in latest or sample.source_ts >= latest[k].source_ts:
            latest[k] = sample
    return latest
