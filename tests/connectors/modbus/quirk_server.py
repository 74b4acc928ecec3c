"""A Modbus TCP server with the quirks of devices in the field, for the tests.

Written on raw asyncio streams, with nothing from pymodbus or the project's simulator, so that
the connector is tried against an independent implementation. Registers read as a function
of their place: unit `u`, address `a` holds `(u * 1000 + a) % 65536`, in the holding and the
input table alike (FC3, FC4; any other function answers exception 01).

Each quirk is off by default and set per server:

    close_after_answer   the connection is closed right after each answer (cheap PLCs, gateways)
    wrong_tid_every      every N-th answer carries a wrong transaction id
    late_every, late_s   every N-th request is answered `late_s` seconds late
    max_registers        reads of more registers answer exception 03 (illegal data value)
    one_connection       a second connection is accepted and closed at once while one is open
    malformed            answers claim more data bytes than they carry

Requests are answered one after the other, in order, as a serial device behind a gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

_MBAP = struct.Struct(">HHHB")  # tid, protocol, length, unit
WRONG_TID_OFFSET = 0x8000  # a wrong id far from the ids in flight


@dataclass
class Quirks:
    close_after_answer: bool = False
    wrong_tid_every: int = 0
    late_every: int = 0
    late_s: float = 0.0
    max_registers: int = 125
    one_connection: bool = False
    malformed: bool = False


def register(unit: int, address: int) -> int:
    """The value the server holds at `address` of `unit`."""
    return (unit * 1000 + address) % 65536


@dataclass
class QuirkServer:
    """`async with QuirkServer(Quirks(...)) as server:` listens on 127.0.0.1:`server.port`."""

    quirks: Quirks = field(default_factory=Quirks)
    port: int = 0
    requests: list[tuple[int, int, int, int]] = field(default_factory=list)  # unit fc addr count
    answers: int = 0  # answers sent (late, wrong-id and malformed ones included)
    connections: int = 0  # connections served
    turned_away: int = 0  # connections closed at once (one_connection)
    _open: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> QuirkServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.quirks.one_connection and self._open:
            self.turned_away += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open += 1
        self.connections += 1
        try:
            await self._answer_all(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the server stops: this handler's task ends quietly
        finally:
            self._open -= 1
            self._tasks.discard(task)
            writer.close()

    async def _answer_all(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            header = await reader.readexactly(_MBAP.size)
            tid, _, length, unit = _MBAP.unpack(header)
            pdu = await reader.readexactly(length - 1)
            number = len(self.requests) + 1
            function, address, count = struct.unpack(">BHH", pdu[:5])
            self.requests.append((unit, function, address, count))
            quirks = self.quirks
            if quirks.late_every and number % quirks.late_every == 0:
                await asyncio.sleep(quirks.late_s)
            self.answers += 1
            if quirks.wrong_tid_every and self.answers % quirks.wrong_tid_every == 0:
                tid = (tid + WRONG_TID_OFFSET) % 65536
            answer = self._pdu(unit, function, address, count)
            writer.write(_MBAP.pack(tid, 0, len(answer) + 1, unit) + answer)
            await writer.drain()
            if quirks.close_after_answer:
                return

    def _pdu(self, unit: int, function: int, address: int, count: int) -> bytes:
        if function not in (3, 4):
            return bytes((function | 0x80, 1))
        if count > self.quirks.max_registers:
            return bytes((function | 0x80, 3))
        data = struct.pack(f">{count}H", *(register(unit, address + i) for i in range(count)))
        if self.quirks.malformed:
            return bytes((function, min(255, len(data) + 20))) + data
        return bytes((function, len(data))) + data
