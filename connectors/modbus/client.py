"""`ModbusInput`: polls one Modbus TCP endpoint on a fixed schedule and emits samples.

One connection per endpoint and one request in flight at a time: many devices (and the
gateways in front of serial lines) serve a single outstanding request per connection. We own
retry and reconnect, so pymodbus runs with `retries=0` and no reconnect task of its own; a
timeout or a lost connection closes the client and a fresh one is built after a backoff, so
no half-read response can leak into the next request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from connectors.base import ConnectorStats, Emit
from connectors.modbus.codec import BitBlockDecoder, Field, RegisterBlockDecoder
from connectors.modbus.config import Config, Table
from connectors.modbus.plan import ReadRequest, plan_device
from connectors.reconnect import Backoff
from historian.sample import Quality, Sample

EXCEPTION_MEANINGS: dict[int, str] = {
    1: "illegal function (the device does not support this table)",
    2: "illegal data address (an address in the request does not exist on the device)",
    3: "illegal data value (the device refuses this count; lower the per-read limit)",
    4: "server device failure",
    5: "acknowledge (busy with a long command)",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

_Read = Callable[..., Awaitable[ModbusPDU]]


def _reader(client: AsyncModbusTcpClient, table: Table) -> _Read:
    """The client method that reads `table`."""
    return {
        Table.HOLDING: client.read_holding_registers,
        Table.INPUT: client.read_input_registers,
        Table.COIL: client.read_coils,
        Table.DISCRETE: client.read_discrete_inputs,
    }[table]


@dataclass(frozen=True, slots=True)
class _Poll:
    """A planned request with its decoder and the series names of its tags."""

    request: ReadRequest
    decoder: RegisterBlockDecoder | BitBlockDecoder
    series: tuple[tuple[str, str, str], ...]  # (line, machine, signal) per tag

    def samples(self, values: Sequence[float], ts: int, site: str) -> list[Sample]:
        return [
            Sample(line, machine, signal, value, Quality.GOOD, ts, site)
            for (line, machine, signal), value in zip(self.series, values, strict=True)
        ]

    def bad(self, ts: int, site: str) -> list[Sample]:
        nan = math.nan
        return [
            Sample(line, machine, signal, nan, Quality.BAD, ts, site)
            for line, machine, signal in self.series
        ]


def _decoder(request: ReadRequest) -> RegisterBlockDecoder | BitBlockDecoder:
    if request.table.holds_bits:
        return BitBlockDecoder([p.start for p in request.tags], request.count)
    fields = [
        Field(p.start, p.tag.dtype, p.tag.order, p.tag.bit or 0, p.tag.scale, p.tag.offset)
        for p in request.tags
    ]
    return RegisterBlockDecoder(fields, request.count)


def _quiet_pymodbus() -> None:
    """pymodbus warns on every failed connect and dumps frames with errors; our stats carry
    those reasons already. An application that set a level for pymodbus keeps it."""
    names = ("pymodbus", "pymodbus.logging")
    if all(logging.getLogger(name).level == logging.NOTSET for name in names):
        logging.getLogger("pymodbus.logging").setLevel(logging.ERROR)


class _ConnectionLost(Exception):
    """The endpoint stopped answering; the message says why. `samples` holds what the
    interrupted cycle read before that, so it is not lost."""

    def __init__(self, reason: str, samples: Sequence[Sample] = ()) -> None:
        super().__init__(reason)
        self.samples = list(samples)


class ModbusInput:
    """Input plugin for one Modbus TCP endpoint (satisfies `connectors.base.Input`)."""

    def __init__(self, config: Config, *, site: str, line: str) -> None:
        self.name = config.name
        self.endpoint = config.url
        self.stats = ConnectorStats()
        self._config = config
        self._site = site
        self._polls: list[_Poll] = []
        for device in config.devices:
            device_line = device.line or line
            for request in plan_device(device):
                series = tuple((device_line, device.machine, p.tag.signal) for p in request.tags)
                self._polls.append(_Poll(request, _decoder(request), series))
        self._marked_bad = False  # all tags were marked bad since the last good cycle
        self._ever_up = False
        _quiet_pymodbus()

    @property
    def requests(self) -> list[ReadRequest]:
        """The reads of one poll cycle, in the order they are sent."""
        return [poll.request for poll in self._polls]

    async def run(self, emit: Emit) -> None:
        """Connect, poll and reconnect until cancelled; never raises for a device fault."""
        backoff = Backoff(self._config.reconnect)
        while True:
            client = AsyncModbusTcpClient(
                self._config.host,
                port=self._config.port,
                name=self.name,
                # No pymodbus timeout: it wraps connect and every response in asyncio.wait_for,
                # which on Python 3.11 can swallow a cancellation that races with completion
                # (fixed in 3.12); with None it awaits directly and our asyncio.timeout bounds it.
                timeout=None,  # type: ignore[arg-type]
                retries=0,
                reconnect_delay=0,
            )
            try:
                await self._connect(client)
                await self._poll_forever(client, emit, backoff)
            except _ConnectionLost as lost:
                await self._went_down(emit, lost)
            finally:
                client.close()
            await asyncio.sleep(backoff.next())

    async def _connect(self, client: AsyncModbusTcpClient) -> None:
        timeout = self._config.timeout_s
        try:
            async with asyncio.timeout(timeout):
                connected = await client.connect()
        except TimeoutError:
            raise _ConnectionLost(f"connect to {self.endpoint}: no answer in {timeout} s") from None
        if not connected:
            raise _ConnectionLost(f"connect to {self.endpoint} failed")

    async def _poll_forever(
        self, client: AsyncModbusTcpClient, emit: Emit, backoff: Backoff
    ) -> None:
        """Poll on a fixed schedule: period stays poll_interval_s however long a cycle takes,
        and a cycle that overran skips the ticks it missed instead of bursting to catch up."""
        loop = asyncio.get_running_loop()
        interval = self._config.poll_interval_s
        due = loop.time()
        while True:
            started = loop.time()
            samples = await self._poll_once(client)
            self.stats.latency_ms = (loop.time() - started) * 1000.0
            if not self.stats.connected:
                self._came_up()
                backoff.reset()
            await self._emit(emit, samples)
            due += interval
            now = loop.time()
            if due < now:
                due += math.ceil((now - due) / interval) * interval
            await asyncio.sleep(due - now)

    def _came_up(self) -> None:
        """A session counts as up once the device answered a whole cycle: a peer that accepts
        connections but never answers must neither reset the backoff nor count a reconnect."""
        if self._ever_up:
            self.stats.reconnects += 1
        self._ever_up = True
        self.stats.connected = True
        self._marked_bad = False

    async def _went_down(self, emit: Emit, lost: _ConnectionLost) -> None:
        """Mark every tag bad once per outage (again only if good values flowed since)."""
        self.stats.connected = False
        self._count_error(str(lost))
        samples = lost.samples
        if samples or not self._marked_bad:
            self._marked_bad = True
            samples = samples + self._all_bad()
        await self._emit(emit, samples)

    async def _poll_once(self, client: AsyncModbusTcpClient) -> list[Sample]:
        """Read every request once; a broken connection raises with the samples read so far."""
        samples: list[Sample] = []
        for poll in self._polls:
            try:
                response = await self._read(client, poll.request)
            except _ConnectionLost as lost:
                raise _ConnectionLost(str(lost), samples) from None
            ts = time.time_ns()
            if response.isError():
                code = getattr(response, "exception_code", 0)
                meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
                self._count_error(f"{poll.request.describe()}: exception {code}, {meaning}")
                samples.extend(poll.bad(ts, self._site))
                continue
            values = response.bits if poll.request.table.holds_bits else response.registers
            if len(values) < poll.request.count:
                self._count_error(f"{poll.request.describe()}: short response ({len(values)})")
                samples.extend(poll.bad(ts, self._site))
                continue
            decoded = poll.decoder.decode(values[: poll.request.count])
            samples.extend(poll.samples(decoded, ts, self._site))
        return samples

    async def _read(self, client: AsyncModbusTcpClient, request: ReadRequest) -> ModbusPDU:
        timeout = self._config.timeout_s
        read = _reader(client, request.table)
        try:
            async with asyncio.timeout(timeout):
                return await read(request.address, count=request.count, device_id=request.unit)
        except TimeoutError:
            raise _ConnectionLost(f"{request.describe()}: no answer in {timeout} s") from None
        except (ModbusException, OSError) as exc:
            raise _ConnectionLost(f"{request.describe()}: {exc}") from None

    def _all_bad(self) -> list[Sample]:
        ts = time.time_ns()
        return [sample for poll in self._polls for sample in poll.bad(ts, self._site)]

    def _count_error(self, reason: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = reason

    async def _emit(self, emit: Emit, samples: list[Sample]) -> None:
        if samples:
            await emit(samples)
            self.stats.samples += len(samples)


def build(config: Config, *, site: str, line: str) -> ModbusInput:
    """The plugin entry point the shared loader calls for `type: modbus`."""
    return ModbusInput(config, site=site, line=line)
