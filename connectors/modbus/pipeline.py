"""A Modbus TCP client for the read functions (FC1-4) with several requests in flight.

pymodbus 3.16 holds a lock around each transaction, so one connection carries one request at
a time and a poll cycle is a chain of round trips. Modbus TCP frames carry a transaction id
(MBAP header), which lets a client send the next request before the last answer is back:
servers and gateways answer each in turn (libmodbus, Node-RED's client and most gateways
rely on it). Here each request gets a free transaction id and a future; answers are matched
by id, so they may come in any order. An answer whose id has no request waiting (late after
its timeout, or never sent) is dropped and counted in `dropped`. Answers are handed on as the
raw data bytes of the response, which the block decoders read without a list of ints.

How many requests are outstanding is the caller's choice (the input bounds it per unit and
per connection); the client only frames, matches and fails what waits when the stream ends.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

_MBAP = struct.Struct(">HHHBBHH")  # tid, protocol 0, length 6, unit, function, address, count
_HEADER = struct.Struct(">HHH")  # tid, protocol, length of what follows
_MAX_LENGTH = 254  # unit id + the longest PDU (253 bytes)
_TIDS = 65536
_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)  # Linux only


@dataclass(frozen=True, slots=True)
class Reply:
    """A device's answer to one read: an exception code (0: none), else the response's data
    bytes (registers big-endian as on the wire, or bits packed LSB first)."""

    exception_code: int = 0
    data: bytes = b""


class ProtocolError(ConnectionError):
    """The peer sent something that is not an answer to what we asked: the stream can no
    longer be trusted, so the connection is dropped."""


class _Pending:
    __slots__ = ("function", "reply", "unit")

    def __init__(self, unit: int, function: int, reply: asyncio.Future[Reply]) -> None:
        self.unit = unit
        self.function = function
        self.reply = reply


class _Framing(asyncio.Protocol):
    """Splits the byte stream into MBAP frames and resolves the request each one answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, _Pending] = {}
        self.dropped = 0
        self.lost: Exception | None = None
        self._buffer = bytearray()
        self._socket: socket.socket | None = None

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
        waiting = self.pending.pop(tid, None)
        if waiting is None or waiting.reply.done():
            self.dropped += 1
            return
        unit, function = frame[0], frame[1]
        if unit != waiting.unit or function & 0x7F != waiting.function:
            waiting.reply.set_exception(
                ProtocolError(
                    f"transaction {tid} answered by unit {unit} function {function & 0x7F}, "
                    f"asked unit {waiting.unit} function {waiting.function}"
                )
            )
            return
        if function & 0x80:
            waiting.reply.set_result(Reply(exception_code=frame[2]))
            return
        waiting.reply.set_result(Reply(data=frame[3 : 3 + frame[2]]))

    def _broken(self, why: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(why)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the device closed the connection")
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            if not waiting.reply.done():
                waiting.reply.set_exception(self.lost)


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

    @property
    def dropped(self) -> int:
        """Answers matched to no waiting request (late after a timeout, or unknown id)."""
        now = self._framing.dropped if self._framing is not None else 0
        return self._dropped_before + now

    async def connect(self, host: str, port: int) -> None:
        """Open the connection (OSError if that fails; the caller bounds the time)."""
        self.close()
        loop = asyncio.get_running_loop()
        _, self._framing = await loop.create_connection(_Framing, host, port)

    async def read(self, function: int, unit: int, address: int, count: int) -> Reply:
        """Send one read and wait for its answer; ConnectionError once the stream ended. A
        cancelled wait (a timeout) forgets the request, so its late answer is dropped."""
        framing = self._framing
        if framing is None or framing.transport is None or framing.lost is not None:
            raise ConnectionResetError("not connected")
        tid = self._free_tid(framing)
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        framing.pending[tid] = _Pending(unit, function, reply)
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush, framing)
        self._outgoing += _MBAP.pack(tid, 0, 6, unit, function, address, count)
        try:
            return await reply
        finally:
            waiting = framing.pending.get(tid)
            if waiting is not None and waiting.reply is reply:  # not answered: forget it
                del framing.pending[tid]

    def _flush(self, framing: _Framing) -> None:
        data, self._outgoing = bytes(self._outgoing), bytearray()
        if framing.transport is not None and framing.lost is None:
            framing.transport.write(data)

    def _free_tid(self, framing: _Framing) -> int:
        for _ in range(_TIDS):
            self._next_tid = (self._next_tid + 1) % _TIDS
            if self._next_tid not in framing.pending:
                return self._next_tid
        raise ProtocolError("65536 requests in flight")  # callers bound it far below

    def close(self) -> None:
        framing, self._framing = self._framing, None
        self._outgoing = bytearray()
        if framing is not None:
            self._dropped_before += framing.dropped
            if framing.transport is not None:
                framing.transport.abort()
