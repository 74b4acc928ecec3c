"""The publish pipeline against node-opcua: several Publish requests wait on the server at once
(the server counts them), and a response lost on the way is recovered with Republish instead
of being missed (a relay drops one on the wire). Also pins what the pipeline relies on in
asyncua: it runs as the session's publish task and closing the session ends it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from asyncua import Client, ua

from connectors.opcua import Config, OpcUaInput, build
from connectors.opcua.pipeline import PublishPipeline
from core.inputs import Emit
from core.sample import Sample
from testbed.influxd import free_port
from tests.connectors.opcua.opcua_testplc import TestPlc
from tests.connectors.opcua.test_opcua_scale import Seconds, series_of
from tests.second_stack import Running, node_opcua_scale_server

pytestmark = pytest.mark.timeout(90)
ITEMS = 500
PER_SUBSCRIPTION = 100  # 5 subscriptions: the pipeline keeps 11 requests outstanding
_PUBLISH_RESPONSE = struct.pack("<BBH", 1, 0, ua.ObjectIds.PublishResponse_Encoding_DefaultBinary)


def connector(endpoint: str, items: int, **settings: object) -> OpcUaInput:
    tags = [
        {"machine": m, "signal": s, "node": f"ns=1;s=v{i}"}
        for i, (m, s) in enumerate(map(series_of, range(items)))
    ]
    entry = {
        "type": "opcua",
        "name": "pipeline",
        "endpoint": endpoint,
        "security": "none",
        "publishing_interval_ms": 200,
        "sampling_interval_ms": 0,
        "max_items_per_subscription": PER_SUBSCRIPTION,
        "tags": tags,
        **settings,
    }
    return build(Config.model_validate(entry), site="s", line="l")


async def run_for(source: OpcUaInput, seconds: float, emit: Emit | None = None) -> Seconds:
    received = Seconds()
    task = asyncio.create_task(source.run(emit or received.emit))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return received


def queued_on_server(server: Running) -> int:
    """The most Publish requests one session had waiting on the server (its own count)."""
    log = server.folder / f"node-{server.port}.log"
    counts = [
        int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("PUBLISH ")
    ]
    return max(counts, default=0)


async def test_several_publish_requests_wait_on_the_server(tmp_path: Path) -> None:
    with node_opcua_scale_server(tmp_path, ITEMS, {"REPORT_PUBLISH": "1"}) as server:
        received = await run_for(connector(server.endpoint, ITEMS), 8)
        queued = queued_on_server(server)
    assert queued >= 5, f"the server never held more than {queued} Publish requests of a session"
    assert len(received.stamps) == ITEMS
    assert min(received.runs().values()) >= 3  # and every tag delivered whole seconds in a row


async def test_a_writer_that_takes_nothing_gets_counted_drops_not_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def stuck(batch: Sequence[Sample]) -> None:  # a historian that never answers
        await asyncio.Event().wait()

    with node_opcua_scale_server(tmp_path, ITEMS) as server:
        source = connector(server.endpoint, ITEMS, buffer_samples=1000)
        await run_for(source, 10, stuck)
    # 10 s of 500 changes a second: one batch taken by the writer, 1,000 held, the rest dropped
    dropped = int(source.stats.last_error.split()[0])
    assert dropped >= 2000, source.stats.last_error
    assert "samples dropped" in source.stats.last_error and source.stats.reconnects == 0
    warned = [r for r in caplog.records if "samples dropped" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING  # once per episode


class DroppingRelay:
    """A TCP relay that drops the `drop_at`-th PublishResponse carrying data from the server
    to the client, and renumbers the channel's later chunks so that the secure channel (whose
    chunk sequence numbers must not skip) stays intact: one message lost on the way."""

    def __init__(self, target_port: int, drop_at: int) -> None:
        self.port = free_port()
        self.dropped = 0
        self._target = target_port
        self._drop_at = drop_at
        self._seen = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        try:
            await asyncio.gather(_copy(reader, up_writer), self._filter(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    async def _filter(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dropped = 0  # on this connection: its later chunks are renumbered by as many
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(8)
                size = struct.unpack_from("<I", header, 4)[0]
                chunk = bytearray(header + await reader.readexactly(size - 8))
                if chunk[:3] == b"MSG":  # SecurityPolicy None: the sequence number at 16
                    if self._drop(chunk):
                        dropped += 1
                        continue
                    (sequence,) = struct.unpack_from("<I", chunk, 16)
                    struct.pack_into("<I", chunk, 16, sequence - dropped)
                writer.write(chunk)
                await writer.drain()

    def _drop(self, chunk: bytearray) -> bool:
        """After header (8), channel id, token id, sequence number and request id, the body
        starts with the response's type id; a keep-alive is short."""
        if chunk[24:28] != _PUBLISH_RESPONSE or len(chunk) < 300:
            return False
        self._seen += 1
        if self._seen != self._drop_at:
            return False
        self.dropped += 1
        return True


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def relay_to(server: Running, drop_at: int) -> AsyncIterator[DroppingRelay]:
    relay = DroppingRelay(server.port, drop_at)
    listener = await asyncio.start_server(relay._relay, "127.0.0.1", relay.port)
    try:
        yield relay
    finally:
        listener.close()


async def test_a_message_lost_on_the_way_is_republished(tmp_path: Path) -> None:
    items = 50  # one subscription: its messages are numbered 1, 2, 3 ...
    with node_opcua_scale_server(tmp_path, items) as server:
        async with relay_to(server, drop_at=4) as relay:
            source = connector(f"opc.tcp://127.0.0.1:{relay.port}/plc", items)
            received = await run_for(source, 9)
    assert relay.dropped == 1
    assert source.stats.reconnects == 0 and source.stats.errors == 0
    for key, seconds in received.stamps.items():  # every second from the first to the last
        missing = set(range(min(seconds), max(seconds) + 1)) - seconds
        assert not missing, f"{key}: seconds {sorted(missing)} never arrived"
        assert len(seconds) >= 6


async def test_the_pipeline_is_the_sessions_publish_task_until_it_closes(plc: TestPlc) -> None:
    client = Client(plc.endpoint, timeout=5)
    await client.connect()
    session = client.uaclient.session
    losses: list[str] = []
    pipeline = PublishPipeline(
        session, depth=3, timeout_s=5, on_loss=losses.append, on_lost_message=losses.append
    )
    pipeline.install()
    answered = asyncio.Event()
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=50, RequestedMaxKeepAliveCount=2, PublishingEnabled=True
    )
    await session.create_subscription(params, lambda result: answered.set())
    task = session._publish_task
    assert task is not None and task.get_coro().__qualname__ == "PublishPipeline.run"
    async with asyncio.timeout(5):  # keep-alives come through the pipeline to the callback
        await answered.wait()
    await client.disconnect()
    await asyncio.sleep(0)
    assert task.done() and not losses
