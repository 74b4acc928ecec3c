"""The simulated line through the real parts: sim servers -> connectors -> historian.

Everything talks over real sockets on 127.0.0.1: the simulator's OPC UA and Modbus servers,
the connectors built from the generated connectors file, and a real historian (the test
InfluxDB server and the SQLite store).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import yaml

from connectors.config import parse_config
from core.inputs import Input
from core.sample import Quality, Sample
from core.storage import Historian
from delivery.agent import Agent
from delivery.writer import HistorianWriter
from historian import open_historian
from plc_sim.process import Simulator
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpec, load_line
from plc_sim.tags import ExposedTag, exposed_tags
from shopfloor.simconfig import sim_connectors
from testbed.influxd import free_port
from tests.eventually import eventually

SEED = 7
FROZEN_TICK_S = 3600.0  # one tick an hour: the published values hold still while we compare


@pytest.fixture(params=["sqlite", "influxdb"])
async def historian(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Historian]:
    if request.param == "sqlite":
        url = f"sqlite:{tmp_path / 'line.db'}"
    else:
        url = request.getfixturevalue("influx_db_url")
    async with open_historian(url) as opened:
        yield opened


def build_inputs(
    spec: LineSpec, opcua_port: int, modbus_port: int, **overrides: object
) -> list[Input]:
    config = sim_connectors(spec, "127.0.0.1", opcua_port, modbus_port)
    for entry in config["connectors"]:
        entry.update(overrides)
    return parse_config(yaml.safe_dump(config), Path("sim.yaml")).build_inputs()


@contextlib.asynccontextmanager
async def running(*work: object) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(w) for w in work]  # type: ignore[arg-type]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def expected_value(tag: ExposedTag, true_value: float) -> tuple[float, float]:
    """(value, tolerance) a reader must see for a tag, given the simulator's value."""
    if tag.protocol == "opcua" or tag.dtype == "bool":
        return true_value, 1e-9
    if tag.dtype == "float32":
        return true_value, abs(true_value) * 1e-6 + 1e-9
    return true_value, (tag.scale or 1.0) / 2 + 1e-9  # integer registers round to the scale


@pytest.mark.influxdb
async def test_every_tag_arrives_with_its_value_scaling_timestamp_and_quality(
    historian: Historian,
) -> None:
    spec = load_line()
    opcua_port, modbus_port = free_port(), free_port()
    writer = HistorianWriter(historian, flush_interval_s=0.1)
    inputs = build_inputs(spec, opcua_port, modbus_port)
    ready = asyncio.Event()
    started_ns = time.time_ns()
    tags = exposed_tags(spec)
    stored: list[Sample] = []
    sim = run_simulator(
        spec,
        seed=SEED,
        opcua=("127.0.0.1", opcua_port),
        modbus=("127.0.0.1", modbus_port),
        tick_s=FROZEN_TICK_S,
        ready=ready,
    )
    async with running(sim):
        await asyncio.wait_for(ready.wait(), 10)
        agent = Agent(inputs, writer, observers=[lambda _i, s: stored.extend(s)])
        async with running(agent.run()):
            await eventually(
                lambda: (
                    {(s.machine, s.signal) for s in stored} >= {(t.machine, t.signal) for t in tags}
                ),
                "a sample of every tag",
            )
            await eventually(lambda: writer.stats.samples_written >= len(tags), "the writes")
    finished_ns = time.time_ns()

    truth = Simulator(spec, SEED).values()  # what the frozen simulator published
    points = await historian.points("telemetry")
    latest = {(p.tags["machine"], p.tags["signal"]): p for p in points}
    assert set(latest) == {(t.machine, t.signal) for t in tags}
    for tag in tags:
        point = latest[(tag.machine, tag.signal)]
        value, tolerance = expected_value(tag, truth[(tag.machine, tag.signal)])
        assert point.fields["value"] == pytest.approx(value, abs=tolerance), tag
        assert point.fields["quality"] == Quality.GOOD, tag
        assert started_ns <= point.ts <= finished_ns, tag
        assert point.tags["site"] == spec.site and point.tags["line"] == spec.line
    # OPC UA carries the PLC's source timestamp: one tick, one timestamp for all its tags
    opcua_stamps = {p.ts for (m, s), p in latest.items() if spec.machines[m].protocol == "opcua"}
    assert len(opcua_stamps) == 1


@pytest.mark.influxdb
async def test_a_modbus_outage_is_marked_bad_and_heals_while_opcua_flows(
    historian: Historian,
) -> None:
    spec = load_line()
    opcua_port, modbus_port = free_port(), free_port()
    writer = HistorianWriter(historian, flush_interval_s=0.1)
    opcua_input, modbus_input = build_inputs(
        spec, opcua_port, modbus_port, reconnect={"min_s": 0.2, "max_s": 0.5}
    )
    seen: dict[str, list[Sample]] = {"opcua": [], "modbus": []}

    def observe(item: Input, samples: Sequence[Sample]) -> None:
        seen["opcua" if item is opcua_input else "modbus"].extend(samples)

    async def modbus_sim(ready: asyncio.Event) -> None:
        await run_simulator(
            spec, seed=SEED, modbus=("127.0.0.1", modbus_port), tick_s=0.2, ready=ready
        )

    opcua_ready, modbus_ready = asyncio.Event(), asyncio.Event()
    opcua_sim = run_simulator(
        spec, seed=SEED, opcua=("127.0.0.1", opcua_port), tick_s=0.2, ready=opcua_ready
    )
    agent = Agent([opcua_input, modbus_input], writer, observers=[observe])
    async with running(opcua_sim, modbus_sim(modbus_ready)) as (_, first_modbus):
        await asyncio.wait_for(asyncio.gather(opcua_ready.wait(), modbus_ready.wait()), 10)
        async with running(agent.run()):
            await eventually(lambda: modbus_input.stats.connected, "the Modbus connection")
            await eventually(lambda: len(seen["opcua"]) > 20, "OPC UA data")
            first_modbus.cancel()  # the Modbus PLC goes away
            outage = len(seen["modbus"])
            await eventually(
                lambda: any(s.quality == Quality.BAD for s in seen["modbus"][outage:]),
                "BAD Modbus samples",
            )
            assert not modbus_input.stats.connected
            opcua_before = len(seen["opcua"])
            await eventually(
                lambda: len(seen["opcua"]) > opcua_before + 20, "OPC UA during the outage"
            )
            assert opcua_input.stats.connected and opcua_input.stats.reconnects == 0
            healed = len(seen["modbus"])
            async with running(modbus_sim(asyncio.Event())):
                await eventually(lambda: modbus_input.stats.reconnects == 1, "the reconnect")
                await eventually(
                    lambda: any(s.quality == Quality.GOOD for s in seen["modbus"][healed:]),
                    "GOOD Modbus samples after the restart",
                )
            await eventually(lambda: writer.stats.pending == 0, "the writes")
    assert all(s.quality == Quality.GOOD for s in seen["modbus"][:outage])
    bad = [s for s in seen["modbus"][outage:healed] if s.quality == Quality.BAD]
    tag_count = sum(1 for t in exposed_tags(spec) if t.protocol == "modbus")
    assert len(bad) == tag_count, "each Modbus tag is marked BAD once per outage"
    stored_bad = await historian.points(
        "telemetry", tags={"machine": "conveyor", "signal": "current_a"}
    )
    assert Quality.BAD in {p.fields["quality"] for p in stored_bad}
    assert stored_bad[-1].fields["quality"] == Quality.GOOD
