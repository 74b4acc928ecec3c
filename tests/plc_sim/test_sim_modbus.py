"""The Modbus TCP server over a real socket, read and written by a pymodbus client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from plc_sim.machines import MachineState
from plc_sim.modbus_server import ModbusServer
from plc_sim.process import Simulator
from plc_sim.registers import ALARM_BITS, REGISTER_WIDTH, encode
from plc_sim.spec import LineSpec
from plc_sim.tags import ExposedTag, exposed_tags

TIMEOUT_S = 5
ILLEGAL_ADDRESS = 2


@pytest.fixture
async def served(line: LineSpec, free_port: int) -> AsyncIterator[tuple[Simulator, ModbusServer]]:
    sim = Simulator(line, seed=9)
    server = ModbusServer(line, host="127.0.0.1", port=free_port, on_run=sim.set_running)
    for _ in range(120):
        sim.step(1.0)
    server.publish(sim.values())
    await server.start()
    try:
        yield sim, server
    finally:
        await server.stop()


async def _client(server: ModbusServer, timeout_s: float = 2.0) -> AsyncModbusTcpClient:
    host, port = server.address
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
    async with asyncio.timeout(TIMEOUT_S):
        assert await client.connect()
    return client


@pytest.fixture
async def client(served: tuple[Simulator, ModbusServer]) -> AsyncIterator[AsyncModbusTcpClient]:
    client = await _client(served[1])
    try:
        yield client
    finally:
        client.close()


async def _read(client: AsyncModbusTcpClient, tag: ExposedTag) -> list[int] | list[bool]:
    assert tag.address is not None and tag.unit_id is not None
    unit = {"device_id": tag.unit_id}
    async with asyncio.timeout(TIMEOUT_S):
        if tag.table == "coil":
            return (await client.read_coils(tag.address, count=1, **unit)).bits[:1]
        if tag.table == "discrete":
            return (await client.read_discrete_inputs(tag.address, count=1, **unit)).bits[:1]
        count = REGISTER_WIDTH[tag.dtype or ""]
        read = (
            client.read_holding_registers if tag.table == "holding" else client.read_input_registers
        )
        return (await read(tag.address, count=count, **unit)).registers


async def test_every_tag_reads_its_encoded_value(
    served: tuple[Simulator, ModbusServer], client: AsyncModbusTcpClient, line: LineSpec
):
    sim = served[0]
    values = sim.values()
    tags = [t for t in exposed_tags(line) if t.protocol == "modbus"]
    assert len(tags) == 40  # every signal of the three Modbus machines, reason codes included
    for tag in tags:
        value = values[(tag.machine, tag.signal)]
        got = await _read(client, tag)
        if tag.dtype == "bool":
            assert got == [value >= 0.5], tag
        else:
            assert tag.dtype and tag.word_order and tag.scale
            assert got == encode(value, tag.dtype, tag.word_order, tag.scale), tag
    assert values[("conveyor", "run_cmd")] == 1.0
    assert values[("energy_meter", "voltage_l1_v")] > 200  # the float words are not all zero


async def test_reads_coalesce_across_gaps_but_not_into_missing_tables(
    client: AsyncModbusTcpClient,
):
    async with asyncio.timeout(TIMEOUT_S):
        block = await client.read_input_registers(0, count=72, device_id=3)  # meter, 0..71
        assert not block.isError() and len(block.registers) == 72
        assert block.registers[12:52] == [0] * 40  # the gap reads as zeros
        assert any(block.registers[52:54])  # power_kw after the gap
        beyond = await client.read_input_registers(70, count=4, device_id=3)
        assert beyond.isError() and beyond.exception_code == ILLEGAL_ADDRESS
        no_coils = await client.read_coils(0, count=1, device_id=3)  # a meter has none
        assert no_coils.isError() and no_coils.exception_code == ILLEGAL_ADDRESS


async def test_registers_are_read_only(client: AsyncModbusTcpClient):
    async with asyncio.timeout(TIMEOUT_S):
        write = await client.write_register(1, 1234, device_id=1)
        assert write.isError() and write.exception_code == ILLEGAL_ADDRESS
        alarm_coil = await client.write_coil(1, True, device_id=1)  # no command there
        assert alarm_coil.isError()
        speed = await client.read_holding_registers(1, count=1, device_id=1)
    assert speed.registers[0] != 1234


async def test_writing_the_run_coil_stops_the_conveyor(
    served: tuple[Simulator, ModbusServer], client: AsyncModbusTcpClient
):
    sim, server = served
    assert sim.states()["conveyor"] == MachineState.RUNNING
    async with asyncio.timeout(TIMEOUT_S):
        write = await client.write_coil(0, False, device_id=1)
        assert not write.isError()
        assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is False
    for _ in range(30):
        sim.step(1.0)
    server.publish(sim.values())
    assert sim.states()["conveyor"] == MachineState.STOPPED
    async with asyncio.timeout(TIMEOUT_S):
        state = await client.read_holding_registers(0, count=2, device_id=1)
        assert state.registers == [MachineState.STOPPED, 0]  # state, speed_hz
        assert (await client.write_coil(0, True, device_id=1)).isError() is False
    assert sim.values()[("conveyor", "run_cmd")] == 0.0  # until the next step measures it
    sim.step(1.0)
    assert sim.states()["conveyor"] == MachineState.RUNNING


async def test_server_restarts_on_the_same_port(served: tuple[Simulator, ModbusServer]):
    server = served[1]
    first = await _client(server, timeout_s=0.3)
    await server.stop()
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(ModbusIOException):  # the server dropped the connection
            await first.read_holding_registers(0, count=1, device_id=1)
    first.close()
    await server.start()
    second = await _client(server)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reply = await second.read_holding_registers(0, count=1, device_id=1)
        assert reply.registers == [MachineState.RUNNING]
    finally:
        second.close()


async def _alarm_bits(client: AsyncModbusTcpClient, unit: int) -> list[bool]:
    async with asyncio.timeout(TIMEOUT_S):
        answer = await client.read_discrete_inputs(ALARM_BITS, count=2, device_id=unit)
    assert not answer.isError(), answer
    return list(answer.bits[:2])


async def test_a_fault_raises_its_limit_alarm_bit(
    served: tuple[Simulator, ModbusServer], client: AsyncModbusTcpClient
):
    """A conveyor jam drives the motor current past its limit: Overcurrent, the conveyor's
    second alarm bit (discrete 17), turns on, and off once the jam is cleared."""
    sim, server = served
    assert await _alarm_bits(client, 1) == await _alarm_bits(client, 2) == [False, False]
    sim.inject("conveyor", "conveyor_jam", 1.0, None)
    for _ in range(120):
        sim.step(1.0)
        if sim.values()[("conveyor", "current_a")] > 13.0:
            break
    server.publish(sim.values())
    assert (await _alarm_bits(client, 1))[1]  # Overcurrent
    assert await _alarm_bits(client, 2) == [False, False]  # the compressor is fine
    sim.clear("conveyor", "conveyor_jam")
    for _ in range(300):
        sim.step(1.0)
    server.publish(sim.values())
    assert not (await _alarm_bits(client, 1))[1]
