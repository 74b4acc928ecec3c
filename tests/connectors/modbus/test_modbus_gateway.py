"""Several units behind one connection (a gateway): one slow or failing unit marks only its own
tags bad, the others keep their rate, the endpoint stays up. Against the simulator's Modbus server
with device faults, on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from connectors.modbus import Config, ModbusInput, build
from core.sample import Quality, Sample
from plc_sim.modbus_server import DeviceFault, ModbusServer, parse_device_fault
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from shopfloor.simconfig import sim_connectors
from testbed.influxd import free_port

pytestmark = pytest.mark.timeout(30)

POLL_S = 0.1
TIMEOUT_S = 0.2
SLOW = "air_compressor"  # unit 2; conveyor is unit 1, energy_meter unit 3
OTHERS = ("conveyor", "energy_meter")


@contextlib.asynccontextmanager
async def gateway(faults: dict[int | str, DeviceFault]) -> AsyncIterator[ModbusServer]:
    """The default line's three Modbus units on one server, values published once."""
    spec = load_line()
    sim = Simulator(spec, seed=4)
    server = ModbusServer(
        spec, host="127.0.0.1", port=free_port(), on_run=sim.set_running, faults=faults
    )
    sim.step(5.0)
    server.publish(sim.values())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def connector(
    server: ModbusServer, reconnect: dict[str, float], timeout_max_s: float = TIMEOUT_S
) -> ModbusInput:
    """The connector for the line; by default with a fixed timeout (no growing to fit)."""
    host, port = server.address
    config = sim_connectors(load_line(), host, 0, port)
    entry: dict[str, Any] = next(c for c in config["connectors"] if c["type"] == "modbus")
    entry.update(
        poll_interval_s=POLL_S,
        timeout_s=TIMEOUT_S,
        timeout_max_s=timeout_max_s,
        reconnect=reconnect,
    )
    return build(Config.model_validate(entry), site="s", line="l")


async def polled(source: ModbusInput, seconds: float) -> list[list[Sample]]:
    """The batches `source` emits in `seconds` (one per poll cycle while the endpoint is up)."""
    batches: list[list[Sample]] = []

    async def emit(samples: Sequence[Sample]) -> None:
        batches.append(list(samples))

    task = asyncio.create_task(source.run(emit))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return batches


def of(batches: list[list[Sample]], machine: str) -> list[Sample]:
    return [s for batch in batches for s in batch if s.machine == machine]


def assert_others_unharmed(batches: list[list[Sample]], seconds: float) -> None:
    """The other units: good in every cycle, at (nearly) the poll rate, the same values (the
    image is static, so an answer meant for another unit would show)."""
    cycles = [b for b in batches if any(s.machine == OTHERS[0] for s in b)]
    assert len(cycles) >= 0.7 * seconds / POLL_S, f"{len(cycles)} cycles in {seconds} s"
    for machine in OTHERS:
        samples = of(batches, machine)
        assert samples and all(s.quality is Quality.GOOD for s in samples), machine
        first = {s.signal: s.value for s in samples[: len(samples) // len(cycles)]}
        assert all(s.value == first[s.signal] for s in samples), machine


async def test_a_slow_unit_marks_only_its_tags_bad_and_rests() -> None:
    seconds = 3.0
    async with gateway({SLOW: DeviceFault(delay_s=1.0)}) as server:
        source = connector(server, {"min_s": 1.0, "max_s": 4.0})
        batches = await polled(source, seconds)
        assert source.stats.connected and source.stats.reconnects == 0
        assert_others_unharmed(batches, seconds)
        slow = of(batches, SLOW)
        assert slow and all(s.quality is Quality.BAD for s in slow)
        assert source.stats.last_error.startswith("unit 2 ")
        assert f"no answer in {TIMEOUT_S} s" in source.stats.last_error
        # it rests between tries: a few timeouts, not one per cycle
        assert 1 <= source.stats.errors <= 4

        server.set_device_fault(SLOW, None)  # healed: asked again after its pause, good again
        batches = await polled(source, 1.0)
        assert all(s.quality is Quality.GOOD for s in of(batches, SLOW))


async def test_a_slow_unit_is_read_at_its_own_pace_while_the_others_keep_theirs() -> None:
    """The timeout grows to fit a unit that answers each of its three reads 0.3 s late (to
    twice its slowest answer, up to timeout_max_s): its tags are good, read as fast as it
    answers (~0.9 s a round), the others not held up."""
    seconds = 3.0
    async with gateway({SLOW: DeviceFault(delay_s=0.3)}) as server:
        source = connector(server, {"min_s": 0.2, "max_s": 0.4}, timeout_max_s=2.0)
        batches = await polled(source, seconds)
    assert source.stats.connected and source.stats.reconnects == 0
    assert_others_unharmed(batches, seconds)
    slow = of(batches, SLOW)
    good = [s for s in slow if s.quality is Quality.GOOD]
    assert good and slow[-1].quality is Quality.GOOD
    signals = len({s.signal for s in slow})
    assert len(good) // signals >= 2, f"{len(good) // signals} good reads in {seconds} s"
    assert source.stats.errors <= 1  # the first read, before its late answer showed the pace


async def test_a_unit_answering_with_exceptions_marks_only_its_tags_bad() -> None:
    seconds = 1.0
    async with gateway({2: DeviceFault(exception_code=6)}) as server:
        source = connector(server, {"min_s": 1.0, "max_s": 4.0})
        batches = await polled(source, seconds)
    assert source.stats.connected and source.stats.reconnects == 0
    assert_others_unharmed(batches, seconds)
    slow = of(batches, SLOW)
    assert len(slow) >= 5 and all(s.quality is Quality.BAD for s in slow)
    assert "unit 2" in source.stats.last_error
    assert "exception 6, server device busy" in source.stats.last_error


async def test_when_no_unit_answers_the_endpoint_is_down() -> None:
    silent = {unit: DeviceFault(delay_s=1.0) for unit in (1, 2, 3)}
    async with gateway(silent) as server:  # type: ignore[arg-type]
        source = connector(server, {"min_s": 1.0, "max_s": 4.0})
        batches = await polled(source, 1.0)
    assert not source.stats.connected
    assert len(batches) == 1 and all(s.quality is Quality.BAD for s in batches[0])
    assert {s.machine for s in batches[0]} == {SLOW, *OTHERS}
    for unit in (1, 2, 3):
        assert f"unit {unit} " in source.stats.last_error


async def test_a_late_answer_keeps_its_own_transaction_id() -> None:
    """Two requests in flight on one connection, the first to the slow unit: each answer comes
    with its own transaction and unit id (pymodbus' own handler would stamp the late answer
    with the ids of the request that came meanwhile)."""
    async with gateway({SLOW: DeviceFault(delay_s=0.3)}) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        try:
            async with asyncio.timeout(5):
                writer.write(read_request(tid=7, unit=2))
                await asyncio.sleep(0.05)
                writer.write(read_request(tid=8, unit=1))
                answers = [await read_answer(reader), await read_answer(reader)]
        finally:
            writer.close()
    assert answers == [(8, 1), (7, 2)]


def read_request(tid: int, unit: int) -> bytes:
    """An MBAP frame: read holding register 0, one register."""
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, 0, 1)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, int]:
    """(transaction id, unit id) of the next MBAP frame."""
    tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
    await reader.readexactly(length - 1)
    return tid, unit


@pytest.mark.parametrize(
    ("text", "device", "fault"),
    [
        ("air_compressor:delay=2", "air_compressor", DeviceFault(delay_s=2.0)),
        ("3:exception=6", "3", DeviceFault(exception_code=6)),
        (" 2 : delay=0.5, exception=11", "2", DeviceFault(0.5, 11)),
    ],
)
def test_device_faults_from_the_command_line(text: str, device: str, fault: DeviceFault) -> None:
    assert parse_device_fault(text) == (device, fault)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("air_compressor", "expected DEVICE:delay=SECONDS"),
        ("2:slow=1", "expected DEVICE:delay=SECONDS"),
        ("2:delay=soon", "expected DEVICE:delay=SECONDS"),
        ("2:delay=-1", "delay must be 0 or more seconds"),
        ("2:exception=9", "exception code 9 is not one of"),
    ],
)
def test_bad_device_faults_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_device_fault(text)


def test_an_unknown_device_names_the_ones_there_are() -> None:
    spec = load_line()
    with pytest.raises(ValueError, match=r"there are: 1 \(conveyor\), 2 \(air_compressor\)"):
        ModbusServer(
            spec, host="127.0.0.1", port=0, on_run=lambda *_: None, faults={9: DeviceFault(1)}
        )
