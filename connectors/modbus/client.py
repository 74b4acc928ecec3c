"""`ModbusInput`: polls one Modbus endpoint (TCP, RTU over TCP, serial) on a fixed schedule.

One connection per endpoint. With Modbus TCP the units behind it are polled side by side:
each unit has up to its device's `max_in_flight` requests outstanding (1 by default, what
Node-RED sends and every gateway accepts), the connection up to the connector's
`max_in_flight`, so a cycle costs about one round trip per unit rather than one per request
in all. RTU frames carry no transaction id, so there one request is in flight at a time. We
own retry and reconnect. Each device has its own timeout, retries and pause between requests;
a read the device refuses with "illegal data address" is split into one read per tag, so that
one unmapped register does not blank its neighbours.

A device that does not answer in time is that device's fault, not the endpoint's: several
units share one gateway connection, and the others must keep flowing. Its tags turn bad and it
rests (is not asked, its tags stay bad) for a pause that doubles from `reconnect.min_s` to
`reconnect.max_s`, so a silent unit costs the others one timeout per pause, not one per cycle.
Only a cycle in which no device answered at all, or a dropped connection, takes the endpoint
down. A late answer is harmless with Modbus TCP framing (its transaction id has no request
waiting: it is dropped and counted); RTU frames carry none, so there the connection is made
afresh after a timeout, before the next request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat

from connectors.modbus.alarms import AlarmStates
from connectors.modbus.codec import BitBlockDecoder, Field, RegisterBlockDecoder
from connectors.modbus.config import Config, Device
from connectors.modbus.pipeline import MalformedAnswer, Reply
from connectors.modbus.plan import Block, ReadRequest, plan_device, split_request
from connectors.modbus.transport import ConnectError, Session, new_session
from core.inputs import ConnectorStats, Emit, EmitPoints
from core.reconnect import Backoff, Reconnect
from core.sample import Quality, Sample, SampleBatch, Series, SeriesKey
from delivery.handover import Handover

EXCEPTION_MEANINGS: dict[int, str] = {
    1: "illegal function (the device does not support this table)",
    2: "illegal data address (an address in the request does not exist on the device)",
    3: (
        "illegal data value (the device refuses this count; lower max_registers_per_read, "
        "or max_bits_per_read for coils and discrete inputs)"
    ),
    4: "server device failure",
    5: "acknowledge (busy with a long command)",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3  # a device answers it to a read larger than it serves
SLOW_MARGIN = 2.0  # the timeout is this many times a device's slowest recent answer,
SLOW_DECAY = 0.98  # which fades by this factor with every answer after it
WRONG_IDS_LOG_EVERY_S = 60.0
EMITS_IN_FLIGHT = 4  # poll cycles handed over and not yet durable, before the poller waits,
RUN_AHEAD_S = 0.1  # or as many as are polled in this time: a disk flush takes ~10 ms or more
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Poll:
    """A planned request with its decoder and the series keys of its tags (built once: every
    batch of this read shares the tuple)."""

    request: ReadRequest
    decoder: RegisterBlockDecoder | BitBlockDecoder
    series: tuple[SeriesKey, ...]  # (site, line, machine, signal) per tag
    timeout_s: float
    timeout_max_s: float  # the most the timeout grows to for a slow device
    retries: int
    pause_s: float

    @classmethod
    def of(
        cls, request: ReadRequest, device: Device, where: tuple[str, str], config: Config
    ) -> _Poll:
        """`where` is (site, line) of the device's tags."""
        series = Series((*where, device.machine, p.tag.signal) for p in request.tags)
        timeouts = config.device_timeout(device), config.device_timeout_max(device)
        return cls(request, decoder_for(request), series, *timeouts, device.retries, device.pause_s)

    def split(self) -> list[_Poll]:
        """One poll per tag and alarm: for a device that refuses reads across some of its
        addresses."""
        request = self.request
        return self.parts(
            request.part(Block(span.address, span.width, (index,)))
            for index, span in enumerate(request.spans())
        )

    def parts(self, requests: Iterable[ReadRequest]) -> list[_Poll]:
        """Polls for `requests`, which read this poll's tags in smaller pieces."""
        series_of = {id(p.tag): key for p, key in zip(self.request.tags, self.series, strict=True)}
        return [
            replace(
                self,
                request=request,
                decoder=decoder_for(request),
                series=Series(series_of[id(p.tag)] for p in request.tags),
            )
            for request in requests
        ]

    def samples(self, values: Iterable[float], ts: int) -> SampleBatch:
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


class _Pace:
    """How slow one unit answers: its slowest recent answer, late ones included, fading with
    every answer since, so that the timeout fits a slow device and shrinks when it speeds up."""

    def __init__(self) -> None:
        self.slowest_s = 0.0

    def heard(self, seconds: float) -> None:
        self.slowest_s = max(seconds, self.slowest_s * SLOW_DECAY)

    def timeout(self, poll: _Poll) -> float:
        """The poll's timeout for this unit: from its timeout_s up to its timeout_max_s."""
        return min(poll.timeout_max_s, max(poll.timeout_s, SLOW_MARGIN * self.slowest_s))


class _Unit:
    """Whether one unit id answers, and when to ask it again after it stopped answering."""

    def __init__(self, unit: int, bounds: Reconnect, in_flight: int) -> None:
        self.unit = unit
        self.in_flight = in_flight  # requests it may have outstanding at once
        self._backoff = Backoff(bounds)
        self.resume_at = 0.0  # loop time before which the unit is not asked
        self.silent = False
        self.why = ""
        self.task: asyncio.Task[tuple[SampleBatch, _Cycle]] | None = None  # reads under way
        self.bad: dict[str, str] = {}  # its bad tags and why, as of its last finished reads

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


@dataclass(slots=True)
class _Cycle:
    """What one poll cycle found, gathered from the units polled side by side."""

    bad: dict[str, str] = field(default_factory=dict)  # bad tags and why (stats.bad_tags)
    silent: list[tuple[_Unit, str, bool]] = field(default_factory=list)  # (unit, why, before)
    answered: bool = False
    lost: str = ""  # why the connection failed, if it did
    longest_timeout_s: float = 0.0  # of the requests that timed out

    def add(self, other: _Cycle) -> None:
        """Gather what one unit's reads found into the cycle's findings."""
        self.bad.update(other.bad)
        self.silent += other.silent
        self.answered = self.answered or other.answered
        self.lost = self.lost or other.lost
        self.longest_timeout_s = max(self.longest_timeout_s, other.longest_timeout_s)


class ModbusInput:
    """Input plugin for one Modbus TCP endpoint (satisfies `core.inputs.Input`)."""

    def __init__(self, config: Config, *, site: str, line: str) -> None:
        self.name = config.name
        self.endpoint = config.url
        self.stats = ConnectorStats()
        self.alarms = AlarmStates(config, site=site, line=line)
        self.emit_points: EmitPoints | None = None  # set by the agent (core.inputs.TextInput)
        self._config = config
        self._polls: dict[int, list[_Poll]] = {}  # by unit id, each in plan order
        self._unit_in_flight: dict[int, int] = {}
        for device in config.devices:
            polls = self._polls.setdefault(device.unit, [])
            for request in plan_device(device):
                where = (site, device.line or line)
                polls.append(_Poll.of(request, device, where, config))
            limit = self._unit_in_flight.get(device.unit, device.max_in_flight)
            self._unit_in_flight[device.unit] = min(limit, device.max_in_flight)
        self._marked_bad = False  # all tags were marked bad since the last good cycle
        self._ever_up = False
        self._late_answer_possible = False  # RTU after a timeout: reconnect before a request
        self._units: dict[int, _Unit] = {}
        self._slots = asyncio.Semaphore(1)  # requests in flight on the connection
        self._dropped = 0  # stray answers of this session already counted
        self.stray_answers = 0  # answers dropped because no request waited for them
        self._wrong = 0  # wrong transaction ids of this session already counted
        self.wrong_ids = 0  # answers that carried a wrong transaction id
        self._wrong_logged_at = -math.inf
        self._pace = {unit: _Pace() for unit in self._polls}  # kept across connections
        self._refusals: dict[ReadRequest, str] = {}  # requests answered with an exception

    @property
    def requests(self) -> list[ReadRequest]:
        """The reads of one poll cycle, unit by unit in plan order."""
        return [poll.request for polls in self._polls.values() for poll in polls]

    async def run(self, emit: Emit) -> None:
        """Connect, poll and reconnect until cancelled; never raises for a device fault."""
        depth = max(EMITS_IN_FLIGHT, math.ceil(RUN_AHEAD_S / self._config.poll_interval_s))
        handover = Handover(lambda samples: self._emit(emit, samples), depth)
        try:
            await self._run(handover)
        finally:
            await handover.drain()

    async def _run(self, emit: Handover) -> None:
        backoff = Backoff(self._config.reconnect)
        config = self._config
        while True:
            try:
                session = new_session(
                    config.link,
                    config.serial,
                    config.url,
                    name=self.name,
                    close_after_answer=config.close_after_answer,
                    on_late=self._late,
                )
            except ValueError as exc:  # e.g. serial support not installed
                await self._went_down(emit, _ConnectionLost(str(exc)))
                await asyncio.sleep(backoff.next())
                continue
            self._new_session(session)
            try:
                await self._connect(session)
                await self._poll_forever(session, emit, backoff)
            except _ConnectionLost as lost:
                await self._went_down(emit, lost)
            finally:
                await self._stop_units()
                session.close()
            await asyncio.sleep(backoff.next())

    def _new_session(self, session: Session) -> None:
        """A fresh connection: every device is asked again, no late answer can arrive."""
        self._late_answer_possible = False
        self._dropped = self._wrong = 0
        self.alarms.refresh()
        self._slots = asyncio.Semaphore(self._config.in_flight if session.pipelined else 1)
        bounds = self._config.reconnect
        self._units = {
            unit: _Unit(unit, bounds, self._unit_in_flight[unit] if session.pipelined else 1)
            for unit in self._polls
        }

    def _late(self, unit: int, seconds: float) -> None:
        """An answer came `seconds` after its request, past its timeout: the unit is slow."""
        pace = self._pace.get(unit)
        if pace is not None:
            pace.heard(seconds)

    async def _connect(self, session: Session) -> None:
        try:
            await session.open(self._config.timeout_s)
        except ConnectError as exc:
            raise _ConnectionLost(str(exc)) from None

    async def _poll_forever(self, session: Session, emit: Handover, backoff: Backoff) -> None:
        """Poll on a fixed schedule: period stays poll_interval_s however long a cycle takes,
        and a cycle that overran skips the ticks it missed instead of bursting to catch up."""
        loop = asyncio.get_running_loop()
        interval = self._config.poll_interval_s
        due = loop.time()
        while True:
            started = loop.time()
            samples = await self._poll_once(session, due + 0.9 * interval)
            self.stats.latency_ms = (loop.time() - started) * 1000.0
            if not self.stats.connected:
                self._came_up()
                backoff.reset()
            if samples:
                await emit.put(samples)
            await self._emit_alarms()
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
        polls = self._all_polls()
        self.alarms.unread((poll.request for poll in polls), reason)
        self.stats.bad_tags = dict(name for poll in polls for name in poll.names(reason))
        samples = lost.samples
        if samples or not self._marked_bad:
            self._marked_bad = True
            samples = samples + self._all_bad()
        if samples:
            await emit.put(samples)
        await self._emit_alarms()

    async def _poll_once(self, session: Session, deadline: float) -> SampleBatch:
        """Read every request once, the units side by side; a device that does not answer
        gets its tags bad and rests. A unit still busy at `deadline` (just before the next
        tick) while others have answered (a slow device) is left to finish: its samples come
        with a later cycle, and the other units keep their rate. A broken connection, or a
        cycle in which no device answered, raises (with the samples read so far)."""
        started, carried = [], []
        for unit in self._units.values():
            if unit.task is None:
                unit.task = asyncio.create_task(self._poll_unit(session, unit))
                started.append(unit.task)
            else:
                carried.append(unit.task)
        await _until_deadline_or_answer(started, carried, deadline)
        cycle, samples = _Cycle(), SampleBatch()
        for unit in self._units.values():
            if unit.task is not None and unit.task.done():
                batch, part = unit.task.result()
                unit.task, unit.bad = None, part.bad
                samples += batch
                cycle.add(part)
        if cycle.lost:
            raise _ConnectionLost(cycle.lost, samples)
        loop = asyncio.get_running_loop()
        if cycle.silent and not cycle.answered and not self._waiting(session, cycle):
            raise _ConnectionLost("; ".join(reason for _, reason, _ in cycle.silent))
        for unit, reason, was_silent in cycle.silent:
            self._count_error(reason)
            (_log.debug if was_silent else _log.warning)(
                "%s: %s; its tags are bad, asking it again in %.1f s (the other units go on)",
                self.name,
                reason,
                max(0.0, unit.resume_at - loop.time()),
            )
        self._count_dropped(session)
        self._count_wrong_ids(session)
        self.stats.bad_tags = {n: why for u in self._units.values() for n, why in u.bad.items()}
        return samples

    def _waiting(self, session: Session, cycle: _Cycle) -> bool:
        """Whether to keep a connection on which no device answered this cycle: while
        another unit's read is still under way, or when the connection carried answers and
        one came back, even late, within twice the longest timeout (a slow device is slow,
        not gone). A connection without transaction ids is taken down at once."""
        if any(unit.task is not None for unit in self._units.values()):
            return True
        quiet_s = asyncio.get_running_loop().time() - session.heard_at
        return quiet_s <= 2 * cycle.longest_timeout_s

    async def _stop_units(self) -> None:
        """Cancel the reads still under way (the connection is going) and wait for them."""
        tasks = [unit.task for unit in self._units.values() if unit.task is not None]
        for unit in self._units.values():
            unit.task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll_unit(self, session: Session, unit: _Unit) -> tuple[SampleBatch, _Cycle]:
        """One unit's reads, up to `unit.in_flight` of them outstanding at once, their
        samples in plan order, and what they found."""
        if unit.in_flight == 1:
            return await self._poll_unit_in_turn(session, unit)
        cycle = _Cycle()
        polls = list(enumerate(self._polls[unit.unit]))
        results: list[SampleBatch | None] = [None] * len(polls)
        queue = iter(polls)

        async def lane() -> None:
            for index, poll in queue:
                if cycle.lost:
                    return
                try:
                    results[index] = await self._poll_one(session, unit, poll, index, cycle)
                except _ConnectionLost as lost:
                    cycle.lost = cycle.lost or str(lost)

        lanes = min(unit.in_flight, len(polls))
        await (lane() if lanes == 1 else asyncio.gather(*(lane() for _ in range(lanes))))
        samples = SampleBatch()
        for batch in results:
            if batch is not None:
                samples += batch
        return samples, cycle

    async def _poll_unit_in_turn(self, session: Session, unit: _Unit) -> tuple[SampleBatch, _Cycle]:
        """`_poll_unit` with one request outstanding (the default): the reads one after the
        other, without lanes to share them out (a unit of one read returns its own batch)."""
        cycle = _Cycle()
        polls = tuple(self._polls[unit.unit])  # as planned now: a split replaces entries
        samples: SampleBatch | None = None
        for index, poll in enumerate(polls):
            try:
                batch = await self._poll_one(session, unit, poll, index, cycle)
            except _ConnectionLost as lost:
                cycle.lost = str(lost)
                break
            if samples is None:
                samples = batch
            else:
                samples += batch
        return (samples if samples is not None else SampleBatch()), cycle

    async def _poll_one(
        self, session: Session, unit: _Unit, poll: _Poll, index: int, cycle: _Cycle
    ) -> SampleBatch:
        """One request's samples (bad ones if it failed); raises _ConnectionLost."""
        loop = asyncio.get_running_loop()
        if unit.rests(loop.time()):
            cycle.bad.update(poll.names(unit.why))
            return poll.bad(time.time_ns())
        if poll.pause_s and index:
            await asyncio.sleep(poll.pause_s)
        timeout_s = self._pace[unit.unit].timeout(poll)
        try:
            reply = await self._read(session, poll, timeout_s)
        except _NoAnswer as no_answer:
            cycle.silent.append((unit, str(no_answer), unit.silent))
            cycle.longest_timeout_s = max(cycle.longest_timeout_s, timeout_s)
            unit.fell_silent(loop.time(), str(no_answer))
            self.alarms.unread([poll.request], str(no_answer))
            cycle.bad.update(poll.names(str(no_answer)))
            return poll.bad(time.time_ns())
        except MalformedAnswer as exc:
            cycle.answered = True
            return self._failed(poll, f"{poll.request.describe()}: {exc}", cycle)
        cycle.answered = True
        if unit.answered():
            _log.info("%s: unit %d answers again", self.name, unit.unit)
        code = reply.exception_code
        if not code:
            self._answered(poll)
            return self._decoded(poll, reply, time.time_ns())
        parts = self._split(unit.unit, poll, code)
        if parts:
            samples = SampleBatch()
            for offset, part in enumerate(parts):
                samples += await self._poll_one(session, unit, part, index + offset, cycle)
            return samples
        meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
        return self._failed(poll, f"{poll.request.describe()}: exception {code}, {meaning}", cycle)

    def _failed(self, poll: _Poll, reason: str, cycle: _Cycle) -> SampleBatch:
        """The device answered, but not with values: its tags are bad for `reason`."""
        self._refused(poll, reason)
        self.alarms.unread([poll.request], reason)
        cycle.bad.update(poll.names(reason))
        return poll.bad(time.time_ns())

    def _count_dropped(self, session: Session) -> None:
        """Answers that matched no request in flight: late ones after a timeout (already
        counted as that timeout's error) or stray ids. Dropped, counted in `stray_answers`."""
        dropped = session.dropped
        if dropped > self._dropped:
            self.stray_answers += dropped - self._dropped
            _log.debug(
                "%s: %d answers matched no request, dropped", self.name, dropped - self._dropped
            )
            self._dropped = dropped

    def _all_polls(self) -> list[_Poll]:
        return [poll for polls in self._polls.values() for poll in polls]

    def _count_wrong_ids(self, session: Session) -> None:
        """Answers with a wrong transaction id: counted; they answered the one request waiting
        for their unit and function if there was one, else they were dropped."""
        wrong = session.wrong_ids
        if wrong <= self._wrong:
            return
        self.wrong_ids += wrong - self._wrong
        self._wrong = wrong
        now = time.monotonic()
        if now - self._wrong_logged_at >= WRONG_IDS_LOG_EVERY_S:
            self._wrong_logged_at = now
            _log.warning(
                "%s: %d answers so far carried a wrong transaction id (a device or gateway "
                "bug); each was taken for the one request waiting for its unit and function, "
                "or dropped if there was none",
                self.name,
                self.wrong_ids,
            )

    def _refused(self, poll: _Poll, reason: str) -> None:
        """An exception or malformed answer: counted each time, logged when a request starts
        failing or fails differently (a burst of the same exception is one line)."""
        self._count_error(reason)
        if self._refusals.get(poll.request) != reason:
            self._refusals[poll.request] = reason
            _log.warning("%s: %s; its tags are bad", self.name, reason)

    def _answered(self, poll: _Poll) -> None:
        if self._refusals.pop(poll.request, None) is not None:
            _log.info("%s: %s answers again", self.name, poll.request.describe())

    def _split(self, unit: int, poll: _Poll, code: int) -> list[_Poll]:
        """The polls that replace `poll` for good after exception `code`, or none: one per tag
        around an illegal address; halves (and every other read of the unit's table as large)
        for a device that refuses this many registers with "illegal data value"."""
        request = poll.request
        if request.served < 2 or code not in (ILLEGAL_ADDRESS, ILLEGAL_VALUE):
            return []
        polls = self._polls[unit]
        if code == ILLEGAL_ADDRESS:
            _log.info(
                "%s: %s refused (illegal data address); reading its %d tags one by one",
                self.name,
                request.describe(),
                len(request.tags),
            )
            return self._replace(polls, poll, poll.split())
        limit = request.count // 2
        setting = "max_bits_per_read" if request.table.holds_bits else "max_registers_per_read"
        _log.warning(
            "%s: %s refused (exception 3, illegal data value): the device serves fewer than %d "
            "per read; reading at most %d from now on (set %s: %d on unit %d to start there)",
            self.name,
            request.describe(),
            request.count,
            limit,
            setting,
            limit,
            unit,
        )
        for other in list(polls):
            same_table = other.request.table is request.table
            if other is not poll and same_table and other.request.count > limit:
                self._replace(polls, other, other.parts(split_request(other.request, limit)))
        return self._replace(polls, poll, poll.parts(split_request(request, limit)))

    @staticmethod
    def _replace(polls: list[_Poll], poll: _Poll, parts: list[_Poll]) -> list[_Poll]:
        """`parts` in the place of `poll` (unless it was replaced already); returns them."""
        index = next((i for i, candidate in enumerate(polls) if candidate is poll), None)
        if index is not None:
            polls[index : index + 1] = parts
        return parts

    def _decoded(self, poll: _Poll, reply: Reply, ts: int) -> SampleBatch:
        size = poll.decoder.wire_size
        if len(reply.data) < size:
            request = poll.request
            got = len(reply.data) * 8 if request.table.holds_bits else len(reply.data) // 2
            reason = f"{request.describe()}: short response ({got} of {request.count})"
            self._count_error(reason)
            self.alarms.unread([request], reason)
            return poll.bad(ts)
        if poll.request.alarms:
            self.alarms.read(poll.request, reply.data, ts)
        return poll.samples(poll.decoder.decode_wire(reply.data[:size]), ts)

    async def _read(self, session: Session, poll: _Poll, timeout_s: float) -> Reply:
        """One request under `timeout_s`, resent up to the device's retries, once a slot on
        the connection is free; with RTU framing the connection is made afresh first if an
        answer may still come late (it could pass for the answer to this request)."""
        request = poll.request
        function = request.table.function_code
        loop = asyncio.get_running_loop()
        pace = self._pace[request.unit]
        for _ in range(poll.retries + 1):
            async with self._slots:
                if self._late_answer_possible:
                    session.close()
                    await self._connect(session)
                    self._late_answer_possible = False
                sent = loop.time()
                try:
                    reply = await session.read(
                        function, request.unit, request.address, request.count, sent + timeout_s
                    )
                except TimeoutError:
                    self._late_answer_possible = not session.pipelined
                    continue
                except OSError as exc:
                    raise _ConnectionLost(f"{request.describe()}: {exc}") from None
                pace.heard(loop.time() - sent)
                return reply
        tries = f" ({poll.retries + 1} tries)" if poll.retries else ""
        raise _NoAnswer(f"{request.describe()}: no answer in {timeout_s:g} s{tries}")

    def _all_bad(self) -> SampleBatch:
        ts, batch = time.time_ns(), SampleBatch()
        for poll in self._all_polls():
            batch += poll.bad(ts)
        return batch

    async def _emit_alarms(self) -> None:
        """Hand the alarm events due to the writer (its spool: the samples' guarantee)."""
        due = self.alarms.take()
        if not due:
            return
        if self.emit_points is None:  # no writer to take them: a loss, counted
            self._count_error(f"{len(due)} alarm events dropped: no writer takes events")
            return
        await self.emit_points(due)

    def _count_error(self, reason: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = reason

    async def _emit(self, emit: Emit, samples: Sequence[Sample]) -> None:
        await emit(samples)
        self.stats.samples += len(samples)


_UnitTask = asyncio.Task[tuple[SampleBatch, _Cycle]]


async def _until_deadline_or_answer(
    started: list[_UnitTask], carried: list[_UnitTask], deadline: float
) -> None:
    """Wait for the reads started this cycle until all are done or `deadline`; past it,
    until some unit has answered (with none answering, waiting longer costs nobody a cycle).
    Reads carried over from earlier cycles are waited for only in that second part."""
    loop = asyncio.get_running_loop()
    done: set[_UnitTask] = set()
    pending: set[_UnitTask] = set()
    if started:
        done, pending = await asyncio.wait(started, timeout=max(0.0, deadline - loop.time()))
    done |= {task for task in carried if task.done()}
    pending |= {task for task in carried if not task.done()}
    while pending and not any(task.result()[1].answered for task in done):
        more, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        done |= more


def build(config: Config, *, site: str, line: str) -> ModbusInput:
    """The plugin entry point the shared loader calls for `type: modbus`."""
    return ModbusInput(config, site=site, line=line)
