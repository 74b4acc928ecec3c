"""Requests in flight on one Modbus TCP connection: answers matched by transaction id, stray and
late ones dropped and counted, exceptions and broken answers told apart; and the connector
really keeps several units' requests outstanding at once (the server counts them)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from connectors.modbus import Config, build
from connectors.modbus.pipeline import PipelinedClient, ProtocolError, Reply
from core.sample import Quality, Sample
from plc_sim.modbus_server import DeviceFault, ModbusServer
from plc_sim.spec import load_line
from shopfloor.simconfig import sim_connectors
from tests.connectors.modbus.test_modbus_gateway import gateway
from tests.connectors.modbus.test_modbus_input import running

pytestmark = pytest.mark.timeout(30)

Frame = tuple[int, int, int, int, int]  # tid, unit, function, address, count
Answer = Callable[[Frame, asyncio.StreamWriter], Awaitable[None]]


def answer(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def registers(function: int, *words: int) -> bytes:
    return struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)


@contextlib.asynccontextmanager
async def device(respond: Answer) -> AsyncIterator[PipelinedClient]:
    """A raw Modbus TCP peer on a free port that calls `respond` for each request it reads,
    and a client connected to it."""

    handlers: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frame = struct.unpack(">HHHBBHH", await reader.readexactly(12))
                tid, _, _, unit, function, address, count = frame
                await respond((tid, unit, function, address, count), writer)
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    client = PipelinedClient()
    try:
        await client.connect("127.0.0.1", server.sockets[0].getsockname()[1])
        yield client
    finally:
        client.close()  # the handler reads the end of the stream and returns
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)


async def test_answers_in_any_order_reach_their_requests() -> None:
    held: list[Frame] = []

    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        held.append(frame)
        if len(held) == 3:  # all three in flight: answer them last first
            for tid, unit, function, address, _ in reversed(held):
                writer.write(answer(tid, unit, registers(function, unit * 100 + address)))

    async with device(respond) as client, asyncio.timeout(5):
        replies = await asyncio.gather(*(client.read(3, unit, 7, 1) for unit in (1, 2, 3)))
    assert replies == [Reply(data=struct.pack(">H", u * 100 + 7)) for u in (1, 2, 3)]
    assert len({tid for tid, *_ in held}) == 3
    assert client.dropped == 0


async def test_an_unknown_transaction_id_is_dropped_and_counted() -> None:
    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        tid, unit, function, _, _ = frame
        writer.write(answer((tid + 1000) % 65536, unit, registers(function, 666)))
        writer.write(answer(tid, unit, registers(function, 42)))

    async with device(respond) as client, asyncio.timeout(5):
        reply = await client.read(3, 1, 0, 1)
    assert reply == Reply(data=struct.pack(">H", 42))
    assert client.dropped == 1


async def test_an_exception_answer_gives_its_code() -> None:
    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        tid, unit, function, _, _ = frame
        writer.write(answer(tid, unit, bytes((function | 0x80, 2))))

    async with device(respond) as client, asyncio.timeout(5):
        assert await client.read(4, 9, 100, 2) == Reply(exception_code=2)


async def test_a_late_answer_after_a_timeout_is_dropped_and_the_next_read_goes_on() -> None:
    first: list[Frame] = []

    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        tid, unit, function, _, _ = frame
        if not first:
            first.append(frame)  # no answer now: it comes after the next request's
            return
        writer.write(answer(first[0][0], unit, registers(function, 1)))
        writer.write(answer(tid, unit, registers(function, 2)))

    async with device(respond) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.read(3, 1, 0, 1)
        async with asyncio.timeout(5):
            assert await client.read(3, 1, 0, 1) == Reply(data=struct.pack(">H", 2))
    assert client.dropped == 1


async def test_each_request_times_out_at_its_own_deadline() -> None:
    held: list[Frame] = []

    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        held.append(frame)
        if len(held) == 2:  # both in flight: answer them once the first one's deadline passed
            await asyncio.sleep(0.3)
            for tid, unit, function, address, _ in held:
                writer.write(answer(tid, unit, registers(function, address)))

    async with device(respond) as client, asyncio.timeout(5):
        now = asyncio.get_running_loop().time()
        short = client.read(3, 1, 10, 1, deadline=now + 0.1)
        long = client.read(3, 2, 20, 1, deadline=now + 3)
        replies = await asyncio.gather(short, long, return_exceptions=True)
        assert isinstance(replies[0], TimeoutError)
        assert replies[1] == Reply(data=struct.pack(">H", 20))
        assert client.dropped == 1  # the first one's late answer
        held.clear()
        deadline = asyncio.get_running_loop().time() + 3
        replies = await asyncio.gather(*(client.read(3, u, 7, 1, deadline) for u in (1, 2)))
        assert replies == [Reply(data=struct.pack(">H", 7))] * 2


async def test_an_answer_from_another_unit_or_function_is_refused() -> None:
    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        tid, unit, function, _, _ = frame
        writer.write(answer(tid, unit + 1, registers(function, 5)))

    async with device(respond) as client, asyncio.timeout(5):
        with pytest.raises(ProtocolError, match="answered by unit 2 function 3, asked unit 1"):
            await client.read(3, 1, 0, 1)


async def test_a_closed_connection_fails_what_waits() -> None:
    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with device(respond) as client, asyncio.timeout(5):
        with pytest.raises(ConnectionError):
            await client.read(3, 1, 0, 1)
        with pytest.raises(ConnectionError):
            await client.read(3, 1, 0, 1)


async def test_garbage_instead_of_a_frame_drops_the_connection() -> None:
    async def respond(frame: Frame, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    async with device(respond) as client, asyncio.timeout(5):
        with pytest.raises(ProtocolError, match="not a Modbus TCP answer"):
            await client.read(3, 1, 0, 1)


def slow_gateway(delay_s: float) -> contextlib.AbstractAsyncContextManager[ModbusServer]:
    """The default line's three Modbus units on one simulator server, each answering late."""
    return gateway({unit: DeviceFault(delay_s=delay_s) for unit in (1, 2, 3)})


def modbus_entry(server: ModbusServer, **settings: Any) -> dict[str, Any]:
    """The simulator's connector entry for `server`, polled fast, with `settings` on top."""
    host, port = server.address
    entries = sim_connectors(load_line(), host, 0, port)["connectors"]
    entry: dict[str, Any] = next(c for c in entries if c["type"] == "modbus")
    return {**entry, "poll_interval_s": 0.05, "timeout_s": 2.0, **settings}


async def good_cycles(server: ModbusServer, cycles: int, **settings: Any) -> list[Sample]:
    """Poll `server` with the connector until `cycles` all-good cycles came in."""
    source = build(Config.model_validate(modbus_entry(server, **settings)), site="s", line="l")
    batches: list[Sequence[Sample]] = []
    enough = asyncio.Event()

    async def emit(samples: Sequence[Sample]) -> None:
        if all(s.quality is Quality.GOOD for s in samples):
            batches.append(samples)
            if len(batches) == cycles:
                enough.set()

    async with running(source, emit), asyncio.timeout(20):
        await enough.wait()
    return [s for batch in batches for s in batch]


async def test_units_behind_one_connection_are_asked_side_by_side() -> None:
    """Every unit answers 0.3 s late; the server counts the answers it holds at one time: one
    per unit by default, one in all with max_in_flight 1 on the connector."""
    async with slow_gateway(0.3) as server:
        samples = await good_cycles(server, 2)
        assert server.most_held == 3
        assert {s.machine for s in samples} == {"conveyor", "air_compressor", "energy_meter"}
    async with slow_gateway(0.3) as server:
        await good_cycles(server, 1, max_in_flight=1)
        assert server.most_held == 1


async def test_a_unit_may_have_several_reads_in_flight() -> None:
    """A unit whose device allows it gets several of its reads outstanding at once, within
    the connection's limit."""
    async with slow_gateway(0.3) as server:
        entry = modbus_entry(server)
        devices = [{**d, "max_in_flight": 4} for d in entry["devices"]]
        source = build(Config.model_validate({**entry, "devices": devices}), site="s", line="l")
        reads = Counter(request.unit for request in source.requests)
        await good_cycles(server, 1, devices=devices)
        assert server.most_held == sum(min(4, n) for n in reads.values())
        assert max(reads.values()) > 1  # so the figure above says something
    async with slow_gateway(0.3) as server:
        await good_cycles(server, 1, devices=devices, max_in_flight=2)
        assert server.most_held == 2
