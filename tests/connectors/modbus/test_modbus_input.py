"""ModbusInput against a real pymodbus server on a real socket (127.0.0.1, free port); the
simulator's handler, which answers requests pipelined on one connection as gateways do."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from pymodbus.pdu import ModbusPDU
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus import Config, ModbusInput, build
from connectors.modbus.client import EMITS_IN_FLIGHT
from connectors.modbus.codec import DataType as T
from connectors.modbus.codec import WordOrder as W
from connectors.modbus.codec import encode
from core.inputs import ConnectorStats
from core.sample import Quality, Sample
from plc_sim.modbus_server import PipelinedTcpServer

pytestmark = pytest.mark.timeout(30)

Request = tuple[int, int, int, int]  # (unit, function code, address, count)


def _registers(*words: list[int]) -> list[int]:
    return [w for group in words for w in group]


# Unit 1 holding 0..23: every type once, an untagged 3-register hole (13..15) read through.
HOLDING_1 = _registers(
    encode(-123, T.INT16),  # 0 speed_hz, scale 0.1
    encode(0x01020304, T.UINT32, W.CDAB),  # 1 counter
    encode(1.5, T.FLOAT32, W.CDAB),  # 3 power_kw
    encode(2**40 + 7, T.UINT64, W.DCBA),  # 5 energy_wh
    encode(-0.25, T.FLOAT64, W.BADC),  # 9 pressure_bar
    [0xAAAA, 0xBBBB, 0xCCCC],  # 13..15 not tagged
    [0b1001],  # 16 status word: bits 0 and 3 set
    encode(-2, T.INT32, W.ABCD),  # 17 offset_mm
    encode(-(2**40), T.INT64, W.ABCD),  # 19 position
    encode(0x0102, T.UINT16, W.BADC),  # 23 code
)
UNIT_1_TAGS = [
    {"signal": "speed_hz", "table": "holding", "address": 0, "type": "int16", "scale": 0.1},
    {"signal": "counter", "table": "holding", "address": 1, "type": "uint32", "order": "CDAB"},
    {"signal": "power_kw", "table": "holding", "address": 3, "type": "float32", "order": "CDAB"},
    {"signal": "energy_wh", "table": "holding", "address": 5, "type": "uint64", "order": "DCBA"},
    {
        "signal": "pressure_bar",
        "table": "holding",
        "address": 9,
        "type": "float64",
        "order": "BADC",
    },
    {"signal": "alarm_a", "table": "holding", "address": 16, "type": "bit", "bit": 0},
    {"signal": "alarm_b", "table": "holding", "address": 16, "type": "bit", "bit": 1},
    {"signal": "alarm_c", "table": "holding", "address": 16, "type": "bit", "bit": 3},
    {"signal": "offset_mm", "table": "holding", "address": 17, "type": "int32"},
    {"signal": "position", "table": "holding", "address": 19, "type": "int64"},
    {"signal": "code", "table": "holding", "address": 23, "type": "uint16", "order": "BADC"},
    {"signal": "missing", "table": "holding", "address": 500, "type": "int16"},
    {"signal": "temperature_c", "table": "input", "address": 0, "type": "float32", "offset": -40},
    {"signal": "running", "table": "coil", "address": 0},
    {"signal": "jammed", "table": "coil", "address": 2},
    {"signal": "door_open", "table": "discrete", "address": 1},
]
UNIT_2_TAGS = [
    {"signal": "voltage_v", "table": "holding", "address": 0, "type": "float32", "order": "CDAB"},
    {"signal": "frequency_hz", "table": "input", "address": 0, "type": "uint16", "scale": 0.01},
]
EXPECTED = {
    ("line1", "vfd", "speed_hz"): -12.3,
    ("line1", "vfd", "counter"): float(0x01020304),
    ("line1", "vfd", "power_kw"): 1.5,
    ("line1", "vfd", "energy_wh"): float(2**40 + 7),
    ("line1", "vfd", "pressure_bar"): -0.25,
    ("line1", "vfd", "alarm_a"): 1.0,
    ("line1", "vfd", "alarm_b"): 0.0,
    ("line1", "vfd", "alarm_c"): 1.0,
    ("line1", "vfd", "offset_mm"): -2.0,
    ("line1", "vfd", "position"): float(-(2**40)),
    ("line1", "vfd", "code"): 258.0,
    ("line1", "vfd", "temperature_c"): 21.5,
    ("line1", "vfd", "running"): 1.0,
    ("line1", "vfd", "jammed"): 0.0,
    ("line1", "vfd", "door_open"): 1.0,
    ("line2", "meter", "voltage_v"): 230.0,
    ("line2", "meter", "frequency_hz"): 50.0,
}
# What the plan must send per cycle: unit 1 holding 0..23 in one read (max_gap 8), the
# unmapped register alone, then input, coils, discretes; unit 2 one read per table.
EXPECTED_REQUESTS: list[Request] = [
    (1, 3, 0, 24),
    (1, 3, 500, 1),
    (1, 4, 0, 2),
    (1, 1, 0, 3),
    (1, 2, 1, 1),
    (2, 3, 0, 2),
    (2, 4, 0, 1),
]


def _bits(values: list[bool]) -> list[SimData]:
    return [SimData(0, values=values, datatype=DataType.BITS)]


def _regs(values: list[int]) -> list[SimData]:
    return [SimData(0, values=values, datatype=DataType.REGISTERS)]


def _devices() -> list[SimDevice]:
    unit_1 = (
        _bits([True, True, False, False]),
        _bits([False, True]),
        _regs(HOLDING_1),
        _regs(encode(61.5, T.FLOAT32)),
    )
    unit_2 = (
        _bits([False]),
        _bits([False]),
        _regs(encode(230.0, T.FLOAT32, W.CDAB)),
        _regs([5000]),
    )
    return [SimDevice(1, simdata=unit_1), SimDevice(2, simdata=unit_2)]


class ModbusServer:
    """pymodbus' own async TCP server in this process; records every request it receives."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Request] = []
        self.open_connections = 0
        self.all_closed = asyncio.Event()
        self._server: PipelinedTcpServer | None = None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
        return pdu

    def _trace_connect(self, connected: bool) -> None:
        self.open_connections += 1 if connected else -1
        if self.open_connections == 0:
            self.all_closed.set()

    async def start(self) -> None:
        """Listen on a free port the first time, on the same port after a stop."""
        self._server = PipelinedTcpServer(
            _devices(),
            address=("127.0.0.1", self.port),
            trace_pdu=self._trace_pdu,
            trace_connect=self._trace_connect,
        )
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


@pytest.fixture
async def server() -> AsyncIterator[ModbusServer]:
    modbus_server = ModbusServer()
    await modbus_server.start()
    yield modbus_server
    await modbus_server.stop()


class Recorder:
    """The `emit` callback: keeps every batch, lets a test wait for one it expects."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.times: list[float] = []
        self._changed = asyncio.Condition()

    async def __call__(self, samples: Sequence[Sample]) -> None:
        async with self._changed:
            self.batches.append(list(samples))
            self.times.append(asyncio.get_running_loop().time())
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Sample]], bool]) -> list[Sample]:
        """The first batch from now on that satisfies `predicate` (within 5 s)."""
        seen = len(self.batches)
        async with asyncio.timeout(5), self._changed:
            while True:
                for batch in self.batches[seen:]:
                    if predicate(batch):
                        return batch
                seen = len(self.batches)
                await self._changed.wait()


def _config(port: int, **overrides: object) -> Config:
    entry = {
        "type": "modbus",
        "name": "line1-modbus",
        "url": f"modbus://127.0.0.1:{port}",
        "timeout_s": 0.3,
        "poll_interval_s": 0.05,
        "reconnect": {"min_s": 0.05, "max_s": 0.2},
        "devices": [
            {"unit": 1, "machine": "vfd", "max_gap": 8, "tags": UNIT_1_TAGS},
            {"unit": 2, "machine": "meter", "line": "line2", "tags": UNIT_2_TAGS},
        ],
        **overrides,
    }
    return Config.model_validate(entry)


@contextlib.asynccontextmanager
async def running(modbus_input: ModbusInput, emit: Recorder) -> AsyncIterator[asyncio.Task]:
    task = asyncio.create_task(modbus_input.run(emit))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _series(sample: Sample) -> tuple[str, str, str]:
    return sample.line, sample.machine, sample.signal


def _all_good(batch: list[Sample]) -> bool:
    return all(s.quality is Quality.GOOD for s in batch if s.signal != "missing")


def _all_bad(batch: list[Sample]) -> bool:
    return len(batch) == len(EXPECTED) + 1 and all(
        s.quality is Quality.BAD and math.isnan(s.value) for s in batch
    )


async def test_values_quality_timestamps_and_request_count(server: ModbusServer):
    modbus_input = build(_config(server.port), site="demo", line="line1")
    assert [(r.unit, r.address, r.count) for r in modbus_input.requests] == [
        (u, a, c) for u, _, a, c in EXPECTED_REQUESTS
    ]
    second_batch, never = asyncio.Event(), asyncio.Event()
    batches: list[list[Sample]] = []
    before = time.time_ns()

    async def emit(samples: Sequence[Sample]) -> None:
        batches.append(list(samples))
        if len(batches) == 2:
            second_batch.set()
            await never.wait()  # hold the input so no third cycle starts

    task = asyncio.create_task(modbus_input.run(emit))
    try:
        async with asyncio.timeout(5):
            await second_batch.wait()
        after = time.time_ns()
        for unit in (1, 2):  # the units side by side, each unit's reads in plan order
            sent = [r for r in server.requests if r[0] == unit]
            assert sent == [r for r in EXPECTED_REQUESTS if r[0] == unit] * 2
        assert len(server.requests) == 2 * len(EXPECTED_REQUESTS)
        for batch in batches:
            good = {_series(s): s for s in batch if s.quality is Quality.GOOD}
            assert {k: s.value for k, s in good.items()} == pytest.approx(EXPECTED)
            (missing,) = [s for s in batch if s.signal == "missing"]
            assert missing.quality is Quality.BAD and math.isnan(missing.value)
            assert len(batch) == len(EXPECTED) + 1
            assert all(before <= s.source_ts <= after and s.site == "demo" for s in batch)
        assert min(s.source_ts for s in batches[1]) > max(s.source_ts for s in batches[0])
        stats: ConnectorStats = modbus_input.stats
        assert stats.connected and stats.reconnects == 0
        assert stats.samples == len(EXPECTED) + 1  # counted once emit accepted them
        assert stats.errors == 2
        assert "unit 1 holding 500..500: exception 2, illegal data address" in stats.last_error
        assert stats.latency_ms > 0
        assert server.open_connections == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    async with asyncio.timeout(2):
        await server.all_closed.wait()  # cancelling closed the socket


async def test_outage_marks_all_bad_once_then_reconnects(server: ModbusServer):
    modbus_input = ModbusInput(_config(server.port), site="demo", line="line1")
    recorder = Recorder()
    async with running(modbus_input, recorder):
        await recorder.wait_for(_all_good)
        await server.stop()
        await recorder.wait_for(_all_bad)
        assert not modbus_input.stats.connected
        errors_at_outage = modbus_input.stats.errors
        bad_batches = len(recorder.batches)
        await asyncio.sleep(0.5)  # several failed reconnect attempts
        assert len(recorder.batches) == bad_batches, "tags must be marked bad only once"
        assert modbus_input.stats.errors > errors_at_outage
        assert "connect to" in modbus_input.stats.last_error

        await server.start()
        seen: dict[tuple[str, str, str], float] = {}

        def every_series_good(batch: list[Sample]) -> bool:
            """Units are read on their own pace, so their samples may come in batches apart."""
            seen.update({_series(s): s.value for s in batch if s.quality is Quality.GOOD})
            return seen.keys() >= EXPECTED.keys()

        await recorder.wait_for(every_series_good)
        assert {k: v for k, v in seen.items() if k in EXPECTED} == pytest.approx(EXPECTED)
        assert modbus_input.stats.connected
        assert modbus_input.stats.reconnects == 1


async def test_unanswered_request_times_out_and_marks_all_bad():
    """A peer that accepts the connection but never answers."""
    connections = 0
    second_connection = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections == 2:
            second_connection.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):
                pass
        writer.close()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    modbus_input = ModbusInput(_config(port, timeout_s=0.2), site="demo", line="line1")
    recorder = Recorder()
    try:
        async with running(modbus_input, recorder):
            began = time.monotonic()
            await recorder.wait_for(_all_bad)
            assert 0.15 < time.monotonic() - began < 2.0
            assert not modbus_input.stats.connected
            assert "unit 1 holding 0..23: no answer in 0.2 s" in modbus_input.stats.last_error
            async with asyncio.timeout(3):
                await second_connection.wait()  # it reconnects...
            await asyncio.sleep(0.6)  # ...and that attempt times out as well (each unit, 0.2 s)
            assert len(recorder.batches) == 1, "tags must be marked bad only once"
            assert modbus_input.stats.reconnects == 0, "a silent peer is no reconnect"
            assert modbus_input.stats.errors >= 2
    finally:
        silent.close()
        await silent.wait_closed()


async def test_poll_schedule_neither_drifts_nor_bursts(server: ModbusServer):
    interval = 0.2  # the 0.3-interval tolerances below are 60 ms: room for a loaded machine
    config = _config(server.port, poll_interval_s=interval)
    modbus_input = ModbusInput(config, site="demo", line="line1")
    times: list[float] = []
    cycles = 14
    enough = asyncio.Event()

    async def slow_emit(samples: Sequence[Sample]) -> None:
        times.append(asyncio.get_running_loop().time())
        if len(times) == cycles:
            enough.set()
        # Every cycle's batch takes 40% of the interval to be stored; cycle 4's takes 8.5
        # intervals, longer than the poller may run ahead (EMITS_IN_FLIGHT cycles).
        await asyncio.sleep(interval * (8.5 if len(times) == 4 else 0.4))

    task = asyncio.create_task(modbus_input.run(slow_emit))
    try:
        async with asyncio.timeout(10):
            await enough.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ticks = [(t - times[0]) / interval for t in times]
    # Fixed schedule: the poller reads on while batches are stored (no drift of 0.4 per cycle)
    # until EMITS_IN_FLIGHT are outstanding; then it waits for the stalled one (backpressure:
    # the handover at 3 + 8.5 is off the grid), and skips the ticks it missed instead of
    # running them back to back.
    depth = EMITS_IN_FLIGHT
    stalled = ticks[depth + 3]
    assert abs(stalled - 11.5) < 0.3, ticks
    rest = ticks[: depth + 3] + ticks[depth + 4 :]
    assert all(abs(tick - round(tick)) < 0.3 for tick in rest), ticks
    assert rest[: depth + 3] == pytest.approx(list(range(depth + 3)), abs=0.3), ticks
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert min(gaps) > 0.4, gaps  # no burst of missed cycles after the wait
    assert abs(ticks[depth + 4] - 12) < 0.3, ticks  # the next free tick after the wait
