"""The OPC UA server over a real socket, read by an asyncua client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadInvalidArgument, BadOutOfRange

from plc_sim.opcua_server import OpcUaServer, unece_unit_id
from plc_sim.process import Simulator
from plc_sim.spec import UNITS, LineSpec
from plc_sim.tags import exposed_tags

TIMEOUT_S = 10
START_TIMEOUT_S = 40  # loading the standard address space: seconds on a busy machine
# one server for the module: starting asyncua costs about a second
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(line: LineSpec, module_port: int) -> AsyncIterator[tuple[Simulator, OpcUaServer]]:
    sim = Simulator(line, seed=3)
    server = OpcUaServer(
        line, host="127.0.0.1", port=module_port, inject=sim.inject, clear=sim.clear
    )
    async with asyncio.timeout(START_TIMEOUT_S):
        await server.start()
    try:
        yield sim, server
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(served: tuple[Simulator, OpcUaServer]) -> AsyncIterator[Client]:
    client = Client(served[1].endpoint, timeout=5)
    async with asyncio.timeout(TIMEOUT_S):
        await client.connect()
    try:
        yield client
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await client.disconnect()


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


async def test_every_variable_reads_with_units_range_status_and_timestamp(
    served: tuple[Simulator, OpcUaServer], client: Client, line: LineSpec
):
    sim, server = served
    for _ in range(200):
        sim.step(1.0)
    stamp = datetime.now(UTC)
    values = sim.values()
    await server.publish(values, stamp)
    tags = [t for t in exposed_tags(line) if t.protocol == "opcua"]
    assert len(tags) == 21  # reason codes included
    async with asyncio.timeout(TIMEOUT_S):
        nodes = [client.get_node(t.node_id) for t in tags]
        data = await client.read_attributes(nodes)
        for tag, node, dv in zip(tags, nodes, data, strict=True):
            assert dv.StatusCode.is_good(), tag
            assert _utc(dv.SourceTimestamp) == stamp
            assert float(dv.Value.Value) == pytest.approx(values[(tag.machine, tag.signal)])
            expected_type = {
                "analog": ua.VariantType.Double,
                "total": ua.VariantType.Double,
                "count": ua.VariantType.UInt32,
                "state": ua.VariantType.Int32,
                "flag": ua.VariantType.Boolean,
            }[tag.kind]
            assert dv.Value.VariantType == expected_type, tag
            eu_range = await (await node.get_child("0:EURange")).read_value()
            assert (eu_range.Low, eu_range.High) == (tag.min, tag.max)
            units = await (await node.get_child("0:EngineeringUnits")).read_value()
            assert units.UnitId == unece_unit_id(UNITS[tag.unit][0])
            assert units.DisplayName.Text == UNITS[tag.unit][1]
    assert values[("filler", "bottles_filled_total")] > 0  # a counter with a real value


async def test_browse_path_reaches_a_variable(client: Client):
    async with asyncio.timeout(TIMEOUT_S):
        node = await client.nodes.objects.get_child(["2:line1", "2:capper", "2:cap_torque_nm"])
        assert node.nodeid == ua.NodeId("line1.capper.cap_torque_nm", 2)
        ns = await client.get_namespace_index("urn:shopfloor:plc_sim")
    assert ns == 2
    assert unece_unit_id("CEL") == 4408652  # the OPC UA Part 8 example value for degC


async def test_inject_and_clear_fault_by_method(
    served: tuple[Simulator, OpcUaServer], client: Client
):
    sim = served[0]
    machine = client.get_node("ns=2;s=line1.pasteurizer")
    async with asyncio.timeout(TIMEOUT_S):
        await machine.call_method("2:InjectFault", "hx_fouling", 0.6, 120.0)
        with pytest.raises(BadInvalidArgument):
            await machine.call_method("2:InjectFault", "gremlins", 0.5, 0.0)
        with pytest.raises(BadInvalidArgument):  # a conveyor fault on the pasteurizer
            await machine.call_method("2:InjectFault", "conveyor_jam", 0.5, 0.0)
        with pytest.raises(BadOutOfRange):
            await machine.call_method("2:InjectFault", "hx_fouling", 1.5, 0.0)
        await machine.call_method("2:ClearFault", "hx_fouling")
    events = sim.drain_events()
    assert [(e.machine, e.fault, e.active, e.severity) for e in events] == [
        ("pasteurizer", "hx_fouling", True, 0.6),
        ("pasteurizer", "hx_fouling", False, 0.6),
    ]
    assert events[0].signal == "steam_valve_pct"


async def test_line_simulator_object_faults_any_machine(
    served: tuple[Simulator, OpcUaServer], client: Client
):
    sim = served[0]
    control = client.get_node("ns=2;s=line1.Simulator")
    async with asyncio.timeout(TIMEOUT_S):
        await control.call_method("2:InjectFault", "energy_meter", "voltage_sag", 0.5, 30.0)
        with pytest.raises(BadInvalidArgument):
            await control.call_method("2:InjectFault", "robot", "voltage_sag", 0.5, 30.0)
        with pytest.raises(BadInvalidArgument):
            await control.call_method("2:ClearFault", "robot", "voltage_sag")
        await control.call_method("2:ClearFault", "energy_meter", "voltage_sag")
    assert [(e.machine, e.fault, e.active) for e in sim.drain_events()] == [
        ("energy_meter", "voltage_sag", True),
        ("energy_meter", "voltage_sag", False),
    ]


# Last in the module: it leaves constant variables stamped with an old time.
async def test_source_timestamps_change_only_with_the_value(
    served: tuple[Simulator, OpcUaServer], client: Client, line: LineSpec
) -> None:
    sim, server = served
    tags = [t for t in exposed_tags(line) if t.protocol == "opcua"]
    nodes = [client.get_node(t.node_id) for t in tags]

    async def stamps() -> dict[tuple[str, str], datetime]:
        async with asyncio.timeout(TIMEOUT_S):
            data = await client.read_attributes(nodes)
        return {
            (t.machine, t.signal): _utc(dv.SourceTimestamp)
            for t, dv in zip(tags, data, strict=True)
        }

    values = sim.values()
    await server.publish(values, datetime.now(UTC))
    before = await stamps()
    moved = ("pasteurizer", "product_temp_c")
    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await server.publish({**values, moved: values[moved] + 1.0}, later)
    after = await stamps()
    assert after.pop(moved) == later
    before.pop(moved)
    assert after == before  # as on a real server: unchanged values are not restamped
