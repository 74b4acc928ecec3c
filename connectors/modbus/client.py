"""`ModbusInput`: polls one Modbus endpoint (TCP, RTU over TCP, serial) on a fixed schedule.

One connection per endpoint and one request in flight at a time: many devices (and the
gateways in front of serial lines) serve a single outstanding request per connection. We own
retry and reconnect, so pymodbus runs with `retries=0` and no reconnect task of its own. Each
device has its own timeout, retries and pause between requests; a read the device refuses with
"illegal data address" is split into one read per tag, so that one unmapped register does not
blank its neighbours.

A device that does not answer in time is that device's fault, not the endpoint's: several
units share one gateway connection, and the others must keep flowing. Its tags turn bad and it
rests (is not asked, its tags stay bad) for a pause that doubles from `reconnect.min_s` to
`reconnect.max_s`, so a silent unit costs the others one timeout per pause, not one per cycle.
Only a cycle in which no device answered at all, or a dropped connection, takes the endpoint
down. A late answer is harmless with Modbus TCP framing (pymodbus drops a response whose
transaction id is not the one awaited); RTU frames carry none, so there the connection is made
afresh after a timeout, before the next request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import repeat

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from connectors.base import ConnectorStats, Emit, Handover
from connectors.modbus.codec import BitBlockDecoder, Field, RegisterBlockDecoder
from connectors.modbus.config import Config, Device, Table
from connectors.modbus.plan import PlannedTag, ReadRequest, plan_device
from connectors.modbus.transport import ConnectError, Transport, connect, new_client
from connectors.reconnect import Backoff, Reconnect
from historian.sample import Quality, Sample, SampleBatch, SeriesKey

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


ILLEGAL_ADDRESS = 2
EMITS_IN_FLIGHT = 4  # poll cycles handed over and not yet durable, before the poller waits
_log = logging.getLogger(__name__)


def reader_for(client: ModbusBaseClient, table: Table) -> _Read:
    """The client method that reads `table` (shared with `check` and `probe`)."""
    return {
        Table.HOLDING: client.read_holding_registers,
        Table.INPUT: client.read_input_registers,
        Table.COIL: client.read_coils,
        Table.DISCRETE: client.read_discrete_inputs,
    }[table]


@dataclass(frozen=True, slots=True)
class _Poll:
    """A planned request with its decoder and the series keys of its tags (built once: every
    batch of this read shares the tuple)."""

    request: ReadRequest
    decoder: RegisterBlockDecoder | BitBlockDecoder
    series: tuple[SeriesKey, ...]  # (site, line, machine, signal) per tag
    timeout_s: float
    retries: int
    pause_s: float

    @classmethod
    def of(
        cls, request: ReadRequest, device: Device, where: tuple[str, str], timeout_s: float
    ) -> _Poll:
        """`where` is (site, line) of the device's tags."""
        series = tuple((*where, device.machine, p.tag.signal) for p in request.tags)
        return cls(request, decoder_for(request), series, timeout_s, device.retries, device.pause_s)

    def split(self) -> list[_Poll]:
        """One poll per tag: for a device that refuses reads across some of its addresses."""
        polls = []
        for planned, series in zip(self.request.tags, self.series, strict=True):
            tag = planned.tag
            request = ReadRequest(
                self.request.unit, tag.table, tag.address, tag.width, (PlannedTag(tag, 0),)
            )
            polls.append(
                _Poll(
                    request,
                    decoder_for(request),
                    (series,),
                    self.timeout_s,
                    self.retries,
                    self.pause_s,
                )
            )
        return polls

    def samples(self, values: Sequence[float], ts: int) -> SampleBatch:
        return SampleBatch.of(self.series, values, Quality.GOOD, ts)

    def names(self, why: str) -> list[tuple[str, str]]:
        """("machine/signal", why) for each tag, for ConnectorStats.bad_tags."""
        return [(f"{machine}/{signal}", why) for _, _, machine, signal in self.series]

    def bad(self, ts: int) -> SampleBatch:
        return SampleBatch.of(self.series, repeat(math.nan, len(self.series)), Quality.BAD, ts)


def decoder_for(request: ReadRequest) -> RegisterBlockDecoder | BitBlockDecoder:
    """Decodes every tag of `request` from its response."""
    if request.table.holds_bits:
        return BitBlockDecoder([p.start for p in request.tags], request.count)
    fields = [
        Field(p.start, p.tag.dtype, p.tag.order, p.tag.bit or 0, p.tag.scale, p.tag.offset)
        for p in request.tags
    ]
    return RegisterBlockDecoder(fields, request.count)


class _ConnectionLost(Exception):
    """The endpoint stopped answering; the message says why. `samples` holds what the
    interrupted cycle read before that, so it is not lost."""

    def __init__(self, reason: str, samples: SampleBatch | None = None) -> None:
        super().__init__(reason)
        self.samples = samples if samples is not None else SampleBatch()


class _NoAnswer(Exception):
    """A device did not answer a request in time (after its retries); the message says which."""


class _Unit:
    """Whether one unit id answers, and when to ask it again after it stopped answering."""

    def __init__(self, unit: int, bounds: Reconnect) -> None:
        self.unit = unit
        self._backoff = Backoff(bounds)
        self.resume_at = 0.0  # loop time before which the unit is not asked
        self.silent = False
        self.why = ""

    def rests(self, now: float) -> bool:
        return now < self.resume_at

    def fell_silent(self, now: float, why: str) -> None:
        """It did not answer: rest it."""
        self.resume_at = now + self._backoff.next()
        self.silent = True
        self.why = f"{why} (resting)"

    def answered(self) -> bool:
        """It answered; returns whether it had been silent."""
        was_silent, self.silent = self.silent, False
        self._backoff.reset()
        return was_silent


class ModbusInput:
    """Input plugin for one Modbus TCP endpoint (satisfies `connectors.base.Input`)."""

    def __init__(self, config: Config, *, site: str, line: str) -> None:
        self.name = config.name
        self.endpoint = config.url
        self.stats = ConnectorStats()
        self._config = config
        self._polls: list[_Poll] = []
        for device in config.devices:
            timeout_s = config.device_timeout(device)
            for request in plan_device(device):
                where = (site, device.line or line)
                self._polls.append(_Poll.of(request, device, where, timeout_s))
        self._marked_bad = False  # all tags were marked bad since the last good cycle
        self._ever_up = False
        self._late_answer_possible = False  # RTU after a timeout: reconnect before a request
        self._units: dict[int, _Unit] = {}
        self._refusals: dict[ReadRequest, str] = {}  # requests answered with an exception

    @property
    def requests(self) -> list[ReadRequest]:
        """The reads of one poll cycle, in the order they are sent."""
        return [poll.request for poll in self._polls]

    async def run(self, emit: Emit) -> None:
        """Connect, poll and reconnect until cancelled; never raises for a device fault."""
        handover = Handover(lambda samples: self._emit(emit, samples), EMITS_IN_FLIGHT)
        try:
            await self._run(handover)
        finally:
            await handover.drain()

    async def _run(self, emit: Handover) -> None:
        backoff = Backoff(self._config.reconnect)
        while True:
            try:
                client = new_client(self._config.link, self._config.serial, name=self.name)
            except ValueError as exc:  # e.g. serial support not installed
                await self._went_down(emit, _ConnectionLost(str(exc)))
                await asyncio.sleep(backoff.next())
                continue
            self._new_session()
            try:
                await self._connect(client)
                await self._poll_forever(client, emit, backoff)
            except _ConnectionLost as lost:
                await self._went_down(emit, lost)
            finally:
                client.close()
            await asyncio.sleep(backoff.next())

    def _new_session(self) -> None:
        """A fresh connection: every device is asked again, no late answer can arrive."""
        self._late_answer_possible = False
        self._units = {
            poll.request.unit: _Unit(poll.request.unit, self._config.reconnect)
            for poll in self._polls
        }

    async def _connect(self, client: ModbusBaseClient) -> None:
        try:
            await connect(client, self._config.link, self.endpoint, self._config.timeout_s)
        except ConnectError as exc:
            raise _ConnectionLost(str(exc)) from None

    async def _poll_forever(
        self, client: ModbusBaseClient, emit: Handover, backoff: Backoff
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
            if samples:
                await emit.put(samples)
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
        _log.info("%s: connected to %s", self.name, self.endpoint)
        self._ever_up = True
        self.stats.connected = True
        self._marked_bad = False

    async def _went_down(self, emit: Handover, lost: _ConnectionLost) -> None:
        """Mark every tag bad once per outage (again only if good values flowed since)."""
        was_connected, self.stats.connected = self.stats.connected, False
        reason = str(lost)
        if was_connected or reason != self.stats.last_error:
            _log.warning("%s: %s; its tags are bad, reconnecting", self.name, reason)
        else:
            _log.debug("%s: %s; reconnecting", self.name, reason)
        self._count_error(reason)
        self.stats.bad_tags = dict(name for poll in self._polls for name in poll.names(reason))
        samples = lost.samples
        if samples or not self._marked_bad:
            self._marked_bad = True
            samples = samples + self._all_bad()
        if samples:
            await emit.put(samples)

    async def _poll_once(self, client: ModbusBaseClient) -> SampleBatch:
        """Read every request once; a device that does not answer gets its tags bad and rests.
        A broken connection, or a cycle in which no device answered, raises (with the samples
        read so far)."""
        loop = asyncio.get_running_loop()
        samples = SampleBatch()
        bad: dict[str, str] = {}  # this cycle's bad tags and why (ConnectorStats.bad_tags)
        silent: list[tuple[_Unit, str, bool]] = []  # timed out now: (unit, why, silent before)
        answered = False
        index = 0
        while index < len(self._polls):
            poll = self._polls[index]
            unit = self._units[poll.request.unit]
            if unit.rests(loop.time()):
                bad.update(poll.names(unit.why))
                samples += poll.bad(time.time_ns())
                index += 1
                continue
            if poll.pause_s and index:
                await asyncio.sleep(poll.pause_s)
            try:
                response = await self._read(client, poll)
            except _ConnectionLost as lost:
                raise _ConnectionLost(str(lost), samples) from None
            except _NoAnswer as no_answer:
                silent.append((unit, str(no_answer), unit.silent))
                unit.fell_silent(loop.time(), str(no_answer))
                bad.update(poll.names(str(no_answer)))
                samples += poll.bad(time.time_ns())
                index += 1
                continue
            answered = True
            if unit.answered():
                _log.info("%s: unit %d answers again", self.name, unit.unit)
            ts = time.time_ns()
            if response.isError():
                code = getattr(response, "exception_code", 0)
                if code == ILLEGAL_ADDRESS and len(poll.request.tags) > 1:
                    self._split(index, poll)
                    continue  # read the first part now
                meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
                reason = f"{poll.request.describe()}: exception {code}, {meaning}"
                self._refused(poll, reason)
                bad.update(poll.names(reason))
                samples += poll.bad(ts)
            else:
                self._answered(poll)
                samples += self._decoded(poll, response, ts)
            index += 1
        if silent and not answered:
            raise _ConnectionLost("; ".join(reason for _, reason, _ in silent))
        for unit, reason, was_silent in silent:
            self._count_error(reason)
            (_log.debug if was_silent else _log.warning)(
                "%s: %s; its tags are bad, asking it again in %.1f s (the other units go on)",
                self.name,
                reason,
                max(0.0, unit.resume_at - loop.time()),
            )
        self.stats.bad_tags = bad
        return samples

    def _refused(self, poll: _Poll, reason: str) -> None:
        """An exception answer: counted each time, logged when a request starts failing or
        fails differently (a burst of the same exception is one line)."""
        self._count_error(reason)
        if self._refusals.get(poll.request) != reason:
            self._refusals[poll.request] = reason
            _log.warning("%s: %s; its tags are bad", self.name, reason)

    def _answered(self, poll: _Poll) -> None:
        if self._refusals.pop(poll.request, None) is not None:
            _log.info("%s: %s answers again", self.name, poll.request.describe())

    def _split(self, index: int, poll: _Poll) -> None:
        _log.info(
            "%s: %s refused (illegal data address); reading its %d tags one by one",
            self.name,
            poll.request.describe(),
            len(poll.request.tags),
        )
        self._polls[index : index + 1] = poll.split()

    def _decoded(self, poll: _Poll, response: ModbusPDU, ts: int) -> SampleBatch:
        values = response.bits if poll.request.table.holds_bits else response.registers
        if len(values) < poll.request.count:
            self._count_error(f"{poll.request.describe()}: short response ({len(values)})")
            return poll.bad(ts)
        return poll.samples(poll.decoder.decode(values[: poll.request.count]), ts)

    async def _read(self, client: ModbusBaseClient, poll: _Poll) -> ModbusPDU:
        """One request under the device's timeout, resent up to the device's retries; with
        RTU framing the connection is made afresh first if an answer may still come late
        (it could pass for the answer to this request)."""
        request = poll.request
        read = reader_for(client, request.table)
        for _ in range(poll.retries + 1):
            if self._late_answer_possible:
                client.close()
                await self._connect(client)
                self._late_answer_possible = False
            try:
                async with asyncio.timeout(poll.timeout_s):
                    return await read(request.address, count=request.count, device_id=request.unit)
            except TimeoutError:
                self._late_answer_possible = self._config.link.transport is not Transport.TCP
            except (ModbusException, OSError) as exc:
                raise _ConnectionLost(f"{request.describe()}: {exc}") from None
        tries = f" ({poll.retries + 1} tries)" if poll.retries else ""
        raise _NoAnswer(f"{request.describe()}: no answer in {poll.timeout_s} s{tries}")

    def _all_bad(self) -> SampleBatch:
        ts, batch = time.time_ns(), SampleBatch()
        for poll in self._polls:
            batch += poll.bad(ts)
        return batch

    def _count_error(self, reason: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = reason

    async def _emit(self, emit: Emit, samples: Sequence[Sample]) -> None:
        await emit(samples)
        self.stats.samples += len(samples)


def build(config: Config, *, site: str, line: str) -> ModbusInput:
    """The plugin entry point the shared loader calls for `type: modbus`."""
    return ModbusInput(config, site=site, line=line)
