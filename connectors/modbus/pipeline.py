"""A Modbus TCP client for the read functions (FC1-4) with several requests in flight.

pymodbus 3.16 holds a lock around each transaction, so one connection carries one request at
a time and a poll cycle is a chain of round trips. Modbus TCP frames carry a transaction id
(MBAP header), which lets a client send the next request before the last answer is back:
servers and gateways answer each in turn (libmodbus, Node-RED's client and most gateways
rely on it). Here each request gets a free transaction id and a future; answers are matched
by id, so they may come in any order. Answers are handed on as the raw data bytes of the
response, which the block decoders read without a list of ints.

Devices in the field get this wrong in a few known ways, each handled here:
- an answer late after its timeout carries the id of a request we gave up: it is dropped and
  counted in `dropped`, and its delay handed to `on_late`, so the caller can learn how slow the
  device really is;
- an answer with a wrong id (one we never sent, or another unit's) is counted in `wrong_ids`
  and given to the one request waiting for that unit and function, if only one is;
- an answer whose byte count disagrees with its length fails its request with
  `MalformedAnswer` (the MBAP length still delimits it, so the stream goes on);
- a device that closes the connection after answering fails what still waits with
  `ClosedAfterAnswer`, which tells the caller to open the connection again and resend.

How many requests are outstanding is the caller's choice (the input bounds it per unit and
per connection); the client only frames, matches and fails what waits when the stream ends.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

_MBAP = struct.Struct(">HHHBBHH")  # tid, protocol 0, length 6, unit, function, address, count
_HEADER = struct.Struct(">HHH")  # tid, protocol, length of what follows
_MAX_LENGTH = 254  # unit id + the longest PDU (253 bytes)
_TIDS = 65536
_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)  # Linux only
WRONG_ID_GRACE_S = 0.02  # how long a wrong-id answer waits for the right one to show up
_ABANDONED = 256  # ids of requests given up on, remembered to tell a late answer from a wrong id


@dataclass(frozen=True, slots=True)
class Reply:
    """A device's answer to one read: an exception code (0: none), else the response's data
    bytes (registers big-endian as on the wire, or bits packed LSB first)."""

    exception_code: int = 0
    data: bytes = b""


class ProtocolError(ConnectionError):
    """The peer sent something that is not an answer to what we asked: the stream can no
    longer be trusted, so the connection is dropped."""


class MalformedAnswer(Exception):
    """An answer that is framed correctly but does not hold what it says (its byte count
    disagrees with its length): that request failed, the connection is fine."""


class ClosedAfterAnswer(ConnectionResetError):
    """The device closed the connection cleanly after it had answered on it (cheap PLCs and
    some gateways do so after every answer): open it again and resend, it is no outage."""


class ClosedBeforeAnswer(ConnectionResetError):
    """The device took the connection and closed it before answering anything: devices that
    serve one connection at a time do that while another master is connected."""

    def __init__(self) -> None:
        super().__init__(
            "the device closed the connection without answering: it may serve one connection "
            "at a time (is `shopfloor connect` or another Modbus master connected to it?)"
        )


def wire_size(function: int, count: int) -> int:
    """Data bytes of the answer to a read of `count` bits (FC1, FC2) or registers (FC3, FC4)."""
    return (count + 7) // 8 if function in (1, 2) else 2 * count


class _Pending:
    __slots__ = ("deadline", "function", "reply", "sent_at", "size", "unit")

    def __init__(
        self,
        unit: int,
        function: int,
        size: int,
        sent_at: float,
        deadline: float,
        reply: asyncio.Future[Reply],
    ) -> None:
        self.unit = unit
        self.function = function
        self.size = size  # data bytes expected
        self.sent_at = sent_at
        self.deadline = deadline  # loop time past which it fails with TimeoutError
        self.reply = reply


class _Framing(asyncio.Protocol):
    """Splits the byte stream into MBAP frames and resolves the request each one answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, _Pending] = {}
        self.abandoned: dict[int, _Pending] = {}  # given up on (timed out), oldest first
        self.held: dict[int, bytes] = {}  # wrong-id answers, by the id they are held for
        self.on_late: Callable[[int, float], None] | None = None
        self.dropped = 0
        self.wrong_ids = 0
        self.answers = 0
        self.heard_at = -math.inf  # loop time of the last answer
        self.lost: Exception | None = None
        self._buffer = bytearray()
        self._socket: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def add(self, tid: int, waiting: _Pending) -> None:
        """Wait for the answer to `tid` until `waiting.deadline`.

        One timer per connection, at the earliest deadline, instead of one per request: most
        requests are answered long before it fires, and then it costs a comparison each."""
        self.pending[tid] = waiting
        if waiting.deadline < self._timer_at:
            self._arm(waiting.deadline)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = (
            asyncio.get_running_loop().call_at(deadline, self._expire)
            if deadline < math.inf
            else None
        )

    def _expire(self) -> None:
        """Fail the requests whose deadline passed (their late answers are dropped); wait for
        the next deadline of those left."""
        self._timer, self._timer_at = None, math.inf
        now = asyncio.get_running_loop().time()
        earliest = math.inf
        for tid, waiting in list(self.pending.items()):
            if waiting.deadline <= now:
                self.abandon(tid, waiting)
                if not waiting.reply.done():
                    waiting.reply.set_exception(TimeoutError())
            else:
                earliest = min(earliest, waiting.deadline)
        self._arm(earliest)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._socket = transport.get_extra_info("socket") if _QUICKACK else None
        self._ack_now()

    def _ack_now(self) -> None:
        """Acknowledge what arrives at once (Linux TCP_QUICKACK, which the kernel resets
        after a while): servers with Nagle's algorithm on (libmodbus' accepted sockets, many
        embedded stacks) hold each further answer until the last is acknowledged, and a
        delayed ACK would cost 40 ms per answer once several requests are in flight."""
        if self._socket is not None:
            self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def data_received(self, data: bytes) -> None:
        self._ack_now()
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 6:
            tid, protocol, length = _HEADER.unpack_from(buffer, start)
            if protocol != 0 or not 3 <= length <= _MAX_LENGTH:
                self._broken(ProtocolError(f"not a Modbus TCP answer (MBAP length {length})"))
                return
            end = start + 6 + length
            if len(buffer) < end:
                break
            self._deliver(tid, bytes(buffer[start + 6 : end]))
            start = end
        del buffer[:start]

    def _deliver(self, tid: int, frame: bytes) -> None:
        """`frame` is unit id, function code, then the rest of the PDU."""
        self.answers += 1
        now = self.heard_at = asyncio.get_running_loop().time()
        unit, function = frame[0], frame[1] & 0x7F
        waiting = self.pending.pop(tid, None)
        if waiting is None:
            self._unknown_id(tid, frame, now)
            return
        if self.held.pop(tid, None) is not None:  # a wrong-id answer held for it: not needed
            self.dropped += 1
        if waiting.unit != unit or waiting.function != function:
            waiting.reply.set_exception(
                ProtocolError(
                    f"transaction {tid} answered by unit {unit} function {function}, "
                    f"asked unit {waiting.unit} function {waiting.function}"
                )
            )
            return
        self._resolve(waiting, frame)

    def _unknown_id(self, tid: int, frame: bytes, now: float) -> None:
        """An answer whose id has no request waiting: late (the id of a request given up
        on), else a wrong id, held for the one request that waits for its unit and function
        until `WRONG_ID_GRACE_S` shows that no answer with the right id follows."""
        unit = frame[0]
        late = self.abandoned.pop(tid, None)
        if late is not None and late.unit == unit:
            self.dropped += 1
            if self.on_late is not None:
                self.on_late(unit, now - late.sent_at)
            return
        self.wrong_ids += 1
        tids = self._waiting_for(frame)
        if len(tids) != 1:
            self.dropped += 1
            return
        target = tids[0]
        if target in self.held:
            self.dropped += 1
        self.held[target] = frame
        loop = asyncio.get_running_loop()
        loop.call_later(WRONG_ID_GRACE_S, self._adopt, target, self.pending[target])

    def _adopt(self, tid: int, waiting: _Pending) -> None:
        """Take the wrong-id answer held for `waiting`, if its own answer has not come."""
        frame = self.held.pop(tid, None)
        if frame is None:
            return
        if self.pending.get(tid) is waiting:
            del self.pending[tid]
            self._resolve(waiting, frame)
        else:
            self.dropped += 1

    @staticmethod
    def _resolve(waiting: _Pending, frame: bytes) -> None:
        if waiting.reply.done():
            return
        if not _sound(frame):
            waiting.reply.set_exception(MalformedAnswer(_malformed(frame)))
        elif frame[1] & 0x80:
            waiting.reply.set_result(Reply(exception_code=frame[2]))
        else:
            waiting.reply.set_result(Reply(data=frame[3:]))

    def _waiting_for(self, frame: bytes) -> list[int]:
        """The ids of the requests that `frame` (an answer with a wrong id) could answer."""
        unit, function, error = frame[0], frame[1] & 0x7F, frame[1] & 0x80
        return [
            tid
            for tid, waiting in self.pending.items()
            if waiting.unit == unit
            and waiting.function == function
            and (error or waiting.size == frame[2])
        ]

    def abandon(self, tid: int, waiting: _Pending) -> None:
        """Give up on a request: a later answer with its id is late, not wrong."""
        del self.pending[tid]
        self.abandoned[tid] = waiting
        if len(self.abandoned) > _ABANDONED:
            del self.abandoned[next(iter(self.abandoned))]

    def _broken(self, why: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.fail(why)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answers:
            if exc is None:
                exc = ClosedAfterAnswer("the device closed the connection after an answer")
        elif exc is None or isinstance(exc, ConnectionResetError):
            exc = ClosedBeforeAnswer()
        self.fail(exc)

    def fail(self, why: Exception) -> None:
        """The stream ended (the first reason counts): every waiting request fails with it."""
        if self.lost is not None:
            return
        self.lost = why
        self._arm(math.inf)
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            if not waiting.reply.done():
                waiting.reply.set_exception(why)


def _sound(frame: bytes) -> bool:
    if frame[1] & 0x80:
        return len(frame) == 3
    return len(frame) >= 3 and frame[2] == len(frame) - 3


def _malformed(frame: bytes) -> str:
    if frame[1] & 0x80:
        return f"malformed answer: an exception answer of {len(frame) - 2} bytes (1 expected)"
    return f"malformed answer: byte count {frame[2]} but {len(frame) - 3} data bytes follow"


class PipelinedClient:
    """One Modbus TCP connection on which `read` may be awaited by many tasks at once.

    Requests made in one turn of the event loop (a poll cycle's units, started together) go
    out in one write: a send per request was the largest single cost of a cycle.
    """

    def __init__(self) -> None:
        self._framing: _Framing | None = None
        self._next_tid = 0
        self._outgoing = bytearray()
        self._dropped_before = 0  # by the connections closed so far
        self._wrong_before = 0
        self.on_late: Callable[[int, float], None] | None = None  # (unit, seconds late answer)

    @property
    def dropped(self) -> int:
        """Answers matched to no waiting request (late after a timeout, or unknown id)."""
        now = self._framing.dropped if self._framing is not None else 0
        return self._dropped_before + now

    @property
    def wrong_ids(self) -> int:
        """Answers whose transaction id was not the one of the request they answered."""
        now = self._framing.wrong_ids if self._framing is not None else 0
        return self._wrong_before + now

    @property
    def heard_at(self) -> float:
        """Loop time of the last answer, awaited or late (-inf: none on this connection)."""
        return self._framing.heard_at if self._framing is not None else -math.inf

    @property
    def answered(self) -> bool:
        """Whether an answer came on this connection."""
        return self._framing is not None and self._framing.answers > 0

    @property
    def closed_after_answer(self) -> bool:
        """The device closed the connection after answering: `connect` again and resend."""
        framing = self._framing
        return framing is not None and isinstance(framing.lost, ClosedAfterAnswer)

    async def connect(self, host: str, port: int) -> None:
        """Open the connection (OSError if that fails; the caller bounds the time)."""
        self.close()
        loop = asyncio.get_running_loop()
        _, framing = await loop.create_connection(_Framing, host, port)
        framing.on_late = self.on_late
        self._framing = framing

    async def read(
        self, function: int, unit: int, address: int, count: int, deadline: float = math.inf
    ) -> Reply:
        """Send one read and wait for its answer until `deadline` (loop time), else
        TimeoutError; ConnectionError once the stream ended, MalformedAnswer for an answer
        that is not what it says. A timeout or a cancelled wait gives the request up, so its
        late answer is dropped."""
        framing = self._framing
        if framing is None or framing.transport is None or framing.lost is not None:
            if framing is not None and isinstance(framing.lost, ClosedAfterAnswer):
                raise framing.lost
            raise ConnectionResetError("not connected")
        tid = self._free_tid(framing)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Reply] = loop.create_future()
        size = wire_size(function, count)
        waiting = _Pending(unit, function, size, loop.time(), deadline, reply)
        framing.add(tid, waiting)
        if not self._outgoing:
            loop.call_soon(self._flush, framing)
        self._outgoing += _MBAP.pack(tid, 0, 6, unit, function, address, count)
        try:
            return await reply
        finally:
            if framing.pending.get(tid) is waiting:  # not answered: give it up
                framing.abandon(tid, waiting)

    def _flush(self, framing: _Framing) -> None:
        data, self._outgoing = bytes(self._outgoing), bytearray()
        if framing.transport is not None and framing.lost is None:
            framing.transport.write(data)

    def _free_tid(self, framing: _Framing) -> int:
        for _ in range(_TIDS):
            self._next_tid = (self._next_tid + 1) % _TIDS
            tid = self._next_tid
            if tid not in framing.pending and tid not in framing.abandoned:
                return tid
        raise ProtocolError("65536 requests in flight")  # callers bound it far below

    def close(self) -> None:
        framing, self._framing = self._framing, None
        self._outgoing = bytearray()
        if framing is not None:
            self._dropped_before += framing.dropped
            self._wrong_before += framing.wrong_ids
            framing.fail(ConnectionResetError("the connection was closed"))
            if framing.transport is not None:
                framing.transport.abort()
