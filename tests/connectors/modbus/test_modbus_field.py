"""Modbus in the field: reads split around refused addresses, per-device timeout, retries and
pause, RTU framing through a TCP gateway, serial settings. Real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest
from pymodbus import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus import Config, ModbusInput, build
from connectors.modbus.codec import DataType as T
from connectors.modbus.codec import WordOrder as W
from connectors.modbus.codec import encode
from connectors.modbus.transport import Link, Serial, Transport, new_client, parse_url
from core.sample import Quality, Sample

pytestmark = pytest.mark.timeout(30)

# Holding 0..3 and 10..11 exist; 4..9 answer "illegal data address", as on many meters.
HOLDING = [
    SimData(0, values=[*encode(1.5, T.FLOAT32, W.CDAB), 7, 8], datatype=DataType.REGISTERS),
    SimData(10, values=encode(123456, T.UINT32, W.ABCD), datatype=DataType.REGISTERS),
]
TAGS = [
    {"signal": "power_kw", "table": "holding", "address": 0, "type": "float32", "order": "CDAB"},
    {"signal": "state", "table": "holding", "address": 2, "type": "uint16"},
    {"signal": "hole", "table": "holding", "address": 5, "type": "uint16"},
    {"signal": "energy_wh", "table": "holding", "address": 10, "type": "uint32"},
]
EXPECTED = {"power_kw": 1.5, "state": 7.0, "energy_wh": 123456.0}


class Device:
    """pymodbus' server with the register map above; records request times."""

    def __init__(self, framer: FramerType = FramerType.SOCKET) -> None:
        self.framer = framer
        self.requests: list[tuple[float, int, int]] = []  # (time, address, count)
        self._server: ModbusTcpServer | None = None
        self.port = 0

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            now = asyncio.get_running_loop().time()
            self.requests.append((now, pdu.address, pdu.count))
        return pdu

    async def __aenter__(self) -> Device:
        bits = [SimData(0, values=[False], datatype=DataType.BITS)]
        blocks = (bits, bits, HOLDING, [SimData(0, values=[0], datatype=DataType.REGISTERS)])
        self._server = ModbusTcpServer(
            [SimDevice(1, simdata=blocks)],
            address=("127.0.0.1", 0),
            framer=self.framer,
            trace_pdu=self._trace,
        )
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.shutdown()


def make_input(url: str, **device: object) -> ModbusInput:
    entry = {
        "type": "modbus",
        "name": "meter",
        "url": url,
        "timeout_s": 1.0,
        "poll_interval_s": 0.05,
        "reconnect": {"min_s": 0.05, "max_s": 0.1},
        "devices": [{"unit": 1, "machine": "meter", "max_gap": 20, "tags": TAGS, **device}],
    }
    return build(Config.model_validate(entry), site="s", line="l")


@contextlib.asynccontextmanager
async def running(source: ModbusInput) -> AsyncIterator[list[list[Sample]]]:
    batches: list[list[Sample]] = []

    async def emit(samples: Sequence[Sample]) -> None:
        batches.append(list(samples))

    task = asyncio.create_task(source.run(emit))
    try:
        yield batches
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def first_full_cycle(batches: list[list[Sample]]) -> dict[str, Sample]:
    async with asyncio.timeout(5):
        while not any(len(b) == len(TAGS) for b in batches):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    batch = next(b for b in batches if len(b) == len(TAGS))
    return {s.signal: s for s in batch}


@pytest.mark.parametrize(
    ("framer", "scheme"), [(FramerType.SOCKET, "modbus"), (FramerType.RTU, "modbus+rtu")]
)
async def test_refused_read_is_split_and_the_neighbours_keep_flowing(
    framer: FramerType, scheme: str
) -> None:
    async with Device(framer) as device:
        source = make_input(f"{scheme}://127.0.0.1:{device.port}")
        assert [(r.address, r.count) for r in source.requests] == [(0, 12)]
        async with running(source) as batches:
            samples = await first_full_cycle(batches)
    for signal, value in EXPECTED.items():
        assert (samples[signal].value, samples[signal].quality) == (value, Quality.GOOD), signal
    assert samples["hole"].quality is Quality.BAD
    assert [(r.address, r.count) for r in source.requests] == [(0, 2), (2, 1), (5, 1), (10, 2)]
    assert "unit 1 holding 5..5: exception 2, illegal data address" in source.stats.last_error
    first = [(a, c) for _, a, c in device.requests[:5]]
    assert first == [(0, 12), (0, 2), (2, 1), (5, 1), (10, 2)]  # split at once, same cycle


async def test_pause_between_requests_to_a_slow_device() -> None:
    async with Device() as device:
        source = make_input(f"modbus://127.0.0.1:{device.port}", max_gap=0, pause_s=0.1)
        assert len(source.requests) == 3  # 0..2, 5, 10..11
        async with running(source) as batches:
            await first_full_cycle(batches)
    times = [t for t, _, _ in device.requests[:3]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.09, gaps


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read()
    writer.close()


@pytest.mark.parametrize(("scheme", "connections_used"), [("modbus", 1), ("modbus+rtu", 3)])
async def test_device_timeout_and_retries_fresh_connections_only_without_transaction_ids(
    scheme: str, connections_used: int
) -> None:
    """Modbus TCP retries on its connection (a late answer has a stale transaction id and is
    dropped); RTU frames carry no id, so each retry goes out on a fresh connection."""
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _silent(reader, writer)

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = make_input(f"{scheme}://127.0.0.1:{port}", timeout_s=0.1, retries=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first: list[tuple[list[Sample], int]] = []  # the first batch, and the connections made

    async def emit(samples: Sequence[Sample]) -> None:
        first.append((list(samples), connections))

    task = asyncio.create_task(source.run(emit))
    try:
        async with asyncio.timeout(5):
            while not first:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        elapsed = loop.time() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
    assert source.stats.last_error == "unit 1 holding 0..11: no answer in 0.1 s (3 tries)"
    batch, made = first[0]
    assert made == connections_used
    assert elapsed < 1.0  # the device's 0.1 s, not the connector's 1 s
    assert all(s.quality is Quality.BAD for s in batch)


def test_urls_name_the_transport() -> None:
    assert parse_url("modbus://plc") == Link(Transport.TCP, "plc", 502)
    assert parse_url("modbus+rtu://10.0.0.9:4001") == Link(Transport.RTU_OVER_TCP, "10.0.0.9", 4001)
    assert parse_url("modbus+serial:///dev/ttyUSB0") == Link(
        Transport.SERIAL, device="/dev/ttyUSB0"
    )
    with pytest.raises(ValueError, match="gateways have no default port"):
        parse_url("modbus+rtu://10.0.0.9")
    with pytest.raises(ValueError, match="needs a device path"):
        parse_url("modbus+serial://host/dev/ttyUSB0")


def test_serial_client_or_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    link = parse_url("modbus+serial:///dev/ttyUSB0")
    settings = Serial(baudrate=9600, parity="N", stopbits=2)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="modbus\\+serial needs the pyserial package"):
        new_client(link, settings, name="rtu")


async def test_missing_serial_support_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    entry = {
        "type": "modbus",
        "name": "rtu",
        "url": "modbus+serial:///dev/ttyUSB0",
        "serial": {"baudrate": 9600},
        "reconnect": {"min_s": 0.05, "max_s": 0.1},
        "devices": [{"machine": "m", "tags": TAGS[:1]}],
    }
    source = build(Config.model_validate(entry), site="s", line="l")
    async with running(source) as batches:
        async with asyncio.timeout(5):
            while not batches:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert "needs the pyserial package" in source.stats.last_error
    assert batches[0][0].quality is Quality.BAD
