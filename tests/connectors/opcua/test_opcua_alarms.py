"""PLC alarms into `events`: the simulator's limit alarms and node-opcua's, over real sockets.

The connector subscribes to the Server object's alarm events and calls ConditionRefresh on
every connect; a fault injected into the simulated line raises a limit alarm, and an operator's
Acknowledge shows in the next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import Client, ua

from connectors.opcua import Config, OpcUaInput
from core.sample import Point, Sample
from core.schema import EVENTS, EventKind
from core.severity import SeverityLevel
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import Historian, open_historian
from plc_sim.opcua_server import OpcUaServer
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from testbed.influxd import free_port
from tests.eventually import eventually
from tests.second_stack import Running, node_opcua_alarm_server

pytestmark = pytest.mark.timeout(120)
START_TIMEOUT_S = 40


class Events:
    """The points emitted by the connector; waiters wake on each batch."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self._changed = asyncio.Condition()

    async def emit(self, points: Sequence[Point]) -> None:
        async with self._changed:
            self.points.extend(points)
            self._changed.notify_all()

    async def wait_for(self, match: Callable[[Point], bool], within_s: float = 20.0) -> Point:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: any(match(p) for p in self.points))
        return next(p for p in reversed(self.points) if match(p))


async def _ignore(samples: Sequence[Sample]) -> None:
    pass


@contextlib.asynccontextmanager
async def connector(config: dict[str, Any], events: Events) -> AsyncIterator[OpcUaInput]:
    source = OpcUaInput(Config.model_validate(config), site="plant", line="line1")
    source.emit_points = events.emit
    task = asyncio.create_task(source.run(_ignore))
    try:
        yield source
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def simulated_line() -> AsyncIterator[tuple[Simulator, OpcUaServer]]:
    """The default line's OPC UA server, ticking 1 s of process time every 0.1 s."""
    spec = load_line()
    sim = Simulator(spec, seed=5)
    sim.warm_up(120)
    server = OpcUaServer(
        spec, host="127.0.0.1", port=free_port(), inject=sim.inject, clear=sim.clear
    )
    async with asyncio.timeout(START_TIMEOUT_S):
        await server.start()

    async def tick() -> None:
        while True:
            sim.step(1.0)
            await server.publish(sim.values(), datetime.now(UTC))
            await asyncio.sleep(0.1)

    ticking = asyncio.create_task(tick())
    try:
        yield sim, server
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        await server.stop()


def sim_config(endpoint: str) -> dict[str, Any]:
    return {
        "type": "opcua",
        "name": "sim",
        "endpoint": endpoint,
        "security": "none",
        "publishing_interval_ms": 100,
        "alarms": {},
        "tags": [
            {"machine": "pasteurizer", "signal": "state", "node": "ns=2;s=line1.pasteurizer.state"}
        ],
    }


def overcurrent(active: bool, acked: bool) -> Callable[[Point], bool]:
    def match(point: Point) -> bool:
        return (
            point.tags["machine"] == "conveyor"
            and point.fields["condition"] == "Overcurrent"
            and point.fields["active"] is active
            and point.fields["acked"] is acked
        )

    return match


async def shopfloor_ack(config: Path, entry: dict[str, Any], *ack: str) -> tuple[int, str]:
    """`shopfloor ack` in its own process against a connectors file holding `entry`."""
    text = yaml.safe_dump({"line": "line1", "connectors": [entry]})
    await asyncio.to_thread(config.write_text, text)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopfloor.cli", "ack", "--config", str(config),
        "--connector", entry["name"], *ack,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_a_fault_raises_a_limit_alarm_that_a_restarted_connector_sees_active(
    tmp_path: Path,
) -> None:
    events = Events()
    async with simulated_line() as (sim, server):
        async with connector(sim_config(server.endpoint), events):
            await asyncio.sleep(2)  # connected, nothing active yet
            assert not [p for p in events.points if p.fields["active"]]
            sim.inject("conveyor", "conveyor_jam", 1.0, None)
            raised = await events.wait_for(overcurrent(active=True, acked=False))
        assert raised.measurement == EVENTS.name
        assert raised.tags == {
            "site": "plant",
            "line": "line1",
            "machine": "conveyor",
            "kind": EventKind.ALARM.value,
        }
        assert raised.fields["alarm_severity"] == 850
        assert raised.fields["severity_level"] == SeverityLevel.CRITICAL
        assert raised.fields["retain"] is True
        assert "current_a" in str(raised.fields["text"])

        # a new connector, the alarm still active and unchanged: only ConditionRefresh tells it
        again = Events()
        async with connector(sim_config(server.endpoint), again):
            refreshed = await again.wait_for(overcurrent(active=True, acked=False))
            assert refreshed.fields["event_id"] == raised.fields["event_id"]
            assert refreshed.ts == raised.ts

            ids = (
                "--condition", str(raised.fields["condition_id"]),
                "--event", str(raised.fields["event_id"]),
                "--comment", "belt cleared",
            )  # fmt: skip
            code, output = await shopfloor_ack(
                tmp_path / "off.yaml", sim_config(server.endpoint), *ids
            )
            assert code == 2
            assert "does not allow acknowledging alarms" in output
            assert "acknowledge: true" in output  # the fix
            await asyncio.sleep(1)
            assert not [p for p in again.points if p.fields["acked"]]

            allowed = {**sim_config(server.endpoint), "alarms": {"acknowledge": True}}
            code, output = await shopfloor_ack(tmp_path / "on.yaml", allowed, *ids)
            assert code == 0, output
            assert f"by {getpass.getuser()} at " in output
            acked = await again.wait_for(overcurrent(active=True, acked=True))
            assert acked.fields["comment"] == "belt cleared"


async def test_alarms_of_sources_not_listed_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    """`alarms.sources` keeps a device's alarms out where another connector brings them from
    the device itself (the simulated line's Modbus bits); the listed ones still arrive, and a
    left-out source is logged once. A second connector without the list sees both."""
    kept, every = Events(), Events()
    caplog.set_level(logging.INFO, logger="connectors.opcua.alarms")
    async with simulated_line() as (sim, server):
        listed = {**sim_config(server.endpoint), "alarms": {"sources": ["conveyor"]}}
        async with connector(listed, kept), connector(sim_config(server.endpoint), every):
            await asyncio.sleep(2)
            sim.inject("conveyor", "conveyor_jam", 1.0, None)
            sim.inject("air_compressor", "air_leak", 1.0, None)
            sim.inject("air_compressor", "motor_overheat", 1.0, None)
            await kept.wait_for(overcurrent(active=True, acked=False))
            await every.wait_for(lambda p: p.tags["machine"] == "air_compressor", within_s=60)
            await asyncio.sleep(1)
    assert {p.tags["machine"] for p in kept.points} == {"conveyor"}
    left_out = [
        r for r in caplog.records if "'air_compressor' is not in `alarms.sources`" in r.msg % r.args
    ]
    assert len(left_out) == 1


@pytest.fixture(scope="module")
def node_alarms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with node_opcua_alarm_server(tmp_path_factory.mktemp("node-alarms")) as server:
        yield server


def node_config(endpoint: str) -> dict[str, Any]:
    return {
        **sim_config(endpoint),
        "name": "node",
        "alarms": {"machines": {"1:tank": "filler"}},  # node-opcua: the browse name
        "tags": [{"machine": "filler", "signal": "level", "node": "ns=1;s=tank.level"}],
    }


async def write(endpoint: str, node: str, variant: ua.Variant) -> None:
    async with Client(endpoint, timeout=5) as client:
        await client.get_node(node).write_value(variant)


def condition(name: str, *, active: bool) -> Callable[[Point], bool]:
    return lambda p: p.fields["condition"] == name and p.fields["active"] is active


async def test_node_opcua_limit_and_off_normal_alarms_arrive_with_their_states(
    node_alarms: Running,
) -> None:
    endpoint = node_alarms.endpoint
    events = Events()
    async with connector(node_config(endpoint), events):
        await asyncio.sleep(1)
        await write(endpoint, "ns=1;s=tank.level", ua.Variant(95.0, ua.VariantType.Double))
        level = await events.wait_for(condition("LevelAlarm", active=True))
        await write(endpoint, "ns=1;s=tank.door_open", ua.Variant(True, ua.VariantType.Boolean))
        door = await events.wait_for(condition("DoorOpen", active=True))
        for point in (level, door):
            assert point.tags["machine"] == "filler"  # SourceName 1:tank, mapped
            assert point.tags["kind"] == EventKind.ALARM.value
            assert point.fields["acked"] is False
            assert point.fields["retain"] is True
            assert 1 <= int(point.fields["alarm_severity"]) <= 1000
        await write(endpoint, "ns=1;s=tank.door_open", ua.Variant(False, ua.VariantType.Boolean))
        await events.wait_for(condition("DoorOpen", active=False))

    # the level alarm is still active: a new connector learns it from ConditionRefresh alone
    again = Events()
    async with connector(node_config(endpoint), again):
        refreshed = await again.wait_for(condition("LevelAlarm", active=True))
        assert refreshed.fields["event_id"] == level.fields["event_id"]


async def low_pressure(historian: Historian) -> list[Point]:
    stored = await historian.points(EVENTS.name, tags={"kind": EventKind.ALARM.value})
    return [p for p in stored if p.fields["condition"] == "LowPressure"]


async def test_alarm_events_reach_the_historian_through_the_spool(tmp_path: Path) -> None:
    """`shopfloor connect`'s pipeline: the agent hands the connector the writer, whose spool
    takes the alarm points as it takes samples; a refresh after a reconnect overwrites."""
    async with (
        simulated_line() as (sim, server),
        open_historian(f"sqlite:{tmp_path / 'h.db'}") as historian,
    ):
        writer = HistorianWriter(historian, spool=Spool(tmp_path / "spool"), flush_interval_s=0.1)
        config = Config.model_validate(sim_config(server.endpoint))
        inputs = [OpcUaInput(config, site="plant", line="line1")]
        agent = asyncio.create_task(Agent(inputs, writer, health_interval_s=1).run())
        try:
            sim.inject("air_compressor", "air_leak", 1.0, None)
            async with asyncio.timeout(60):
                while not await low_pressure(historian):  # noqa: ASYNC110 (a query, no event)
                    await asyncio.sleep(0.2)
            server.drop_connections()  # the connector reconnects and refreshes
            await eventually(lambda: inputs[0].stats.reconnects, "a reconnect", 30)
            await asyncio.sleep(1)
        finally:
            agent.cancel()
            await asyncio.gather(agent, return_exceptions=True)
        (low,) = await low_pressure(historian)  # the refresh overwrote it: still one point
        assert low.tags["machine"] == "air_compressor"
        assert low.fields["active"] is True
        assert low.fields["alarm_severity"] == 600
        assert low.fields["severity_level"] == SeverityLevel.HIGH
