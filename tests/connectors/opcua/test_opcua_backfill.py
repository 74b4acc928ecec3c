"""History backfill: a 60 s cut between the connector and a historizing server (the simulator,
and node-opcua as a second stack) is filled from HistoryRead with exactly the values the server
recorded, none doubled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asyncua import Client

from connectors.opcua import Config, OpcUaInput
from core.sample import Point
from core.schema import EVENTS, TELEMETRY, EventKind
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import open_historian
from plc_sim.tags import exposed_tags
from testbed.influxd import free_port
from tests.connectors.opcua.test_opcua_alarms import simulated_line
from tests.eventually import eventually
from tests.second_stack import node_opcua_history_server

pytestmark = pytest.mark.timeout(240)
OUTAGE_S = 60.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Link:
    """A TCP relay between the connector and the server that can be cut (every connection
    closed, new ones refused) and restored: the network between edge and PLC."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self._up = False
        for writer in list(self._writers):
            writer.close()

    def restore(self) -> None:
        self._up = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def link_to(port: int) -> AsyncIterator[Link]:
    link = Link(port)
    await link.start()
    try:
        yield link
    finally:
        await link.stop()


def ns_of(stamp: datetime) -> int:
    aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(microseconds=1) * 1000


async def server_history(endpoint: str, node: str, start_ns: int, end_ns: int) -> set[int]:
    """The source timestamps the server recorded for `node` in [start_ns, end_ns]."""
    async with Client(endpoint, timeout=10) as client:
        values = await client.get_node(node).read_raw_history(
            EPOCH + timedelta(microseconds=start_ns // 1000),
            EPOCH + timedelta(microseconds=end_ns // 1000 + 1),
            numvalues=0,
        )
    return {
        ns_of(v.SourceTimestamp) for v in values if start_ns <= ns_of(v.SourceTimestamp) <= end_ns
    }


@dataclass(frozen=True)
class Tag:
    machine: str
    signal: str
    node_id: str


@dataclass(frozen=True)
class Historizing:
    """A server that historizes what it serves: where it listens and the tags to read."""

    port: int
    path: str
    tags: list[Tag]

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}{self.path}"


@contextlib.asynccontextmanager
async def historizing(stack: str, folder: Path) -> AsyncIterator[Historizing]:
    """The simulator (every variable, the last 3,600 changes) or node-opcua (5 Doubles that
    change every 100 ms, the last 5,000 values)."""
    if stack == "simulator":
        async with simulated_line() as (sim, server):
            tags = [t for t in exposed_tags(sim.spec) if t.protocol == "opcua"]
            port = int(server.endpoint.split(":")[2].split("/")[0])
            yield Historizing(
                port, "/shopfloor/", [Tag(t.machine, t.signal, t.node_id) for t in tags]
            )
        return
    with node_opcua_history_server(folder) as node:
        tags = [Tag("line", f"v{i}", f"ns=1;s=line.v{i}") for i in range(5)]
        yield Historizing(node.port, "/plc", tags)


@pytest.mark.parametrize("stack", ["simulator", "node-opcua"])
async def test_a_60_s_outage_is_backfilled_with_exact_counts_and_nothing_doubled(
    tmp_path: Path, stack: str
) -> None:
    async with (
        historizing(stack, tmp_path) as server,
        link_to(server.port) as link,
    ):
        tags = server.tags
        config = Config.model_validate(
            {
                "type": "opcua",
                "name": "sim",
                "endpoint": f"opc.tcp://127.0.0.1:{link.port}{server.path}",
                "security": "none",
                "publishing_interval_ms": 100,
                "sampling_interval_ms": 0,  # every change, so the live part is complete too
                "reconnect": {"min_s": 0.2, "max_s": 1},
                "backfill": {"values_per_call": 200, "nodes_per_call": 5, "calls_per_s": 50},
                "tags": [
                    {"machine": t.machine, "signal": t.signal, "node": t.node_id} for t in tags
                ],
            }
        )
        source = OpcUaInput(config, site="plant", line="line1")
        async with open_historian(f"sqlite:{tmp_path / 'h.db'}") as historian:
            writer = HistorianWriter(
                historian, spool=Spool(tmp_path / "spool"), flush_interval_s=0.1
            )
            agent = asyncio.create_task(Agent([source], writer, health_interval_s=1).run())
            try:
                await eventually(lambda: source.stats.connected, "connected", 30)
                await asyncio.sleep(5)
                cut_ns = time.time_ns()
                link.cut()
                await asyncio.sleep(OUTAGE_S)
                link.restore()

                async def marker() -> list[Point]:
                    return await historian.points(
                        EVENTS.name, tags={"kind": EventKind.BACKFILL.value}
                    )

                async with asyncio.timeout(60):
                    while not await marker():  # noqa: ASYNC110 (a query, no event)
                        await asyncio.sleep(0.5)
                await asyncio.sleep(2)  # the last batches reach the historian
            finally:
                agent.cancel()
                await asyncio.gather(agent, return_exceptions=True)
            (event,) = await marker()
            gap_end = event.ts
            gap_start = gap_end - round(float(event.fields["duration_s"]) * 1e9)
            assert gap_start <= cut_ns + 100_000_000 < gap_end  # the last answer before the cut
            assert gap_end - gap_start >= OUTAGE_S * 1e9
            assert event.fields["unfilled"] == 0

            expected_total = 0
            window = (cut_ns - 5_000_000_000, gap_end)
            for tag in tags:
                recorded = await server_history(server.endpoint, tag.node_id, gap_start, gap_end)
                expected_total += len(recorded)
                stored = await historian.points(
                    TELEMETRY.name,
                    tags={"machine": tag.machine, "signal": tag.signal},
                    start_ns=window[0],
                    end_ns=window[1] + 1,
                )
                good = [p.ts for p in stored if p.fields.get("quality") == 0]
                assert len(good) == len(set(good)), tag  # nothing doubled
                history = await server_history(server.endpoint, tag.node_id, *window)
                assert history <= set(good), tag  # nothing missing
                # and nothing invented: the one extra a tag may have is its first value after
                # the reconnect, stamped on arrival after the connector's BAD marker (README:
                # Timestamps)
                extra = set(good) - history
                assert len(extra) <= 1 and all(ts > cut_ns for ts in extra), tag
            assert event.fields["backfilled"] == expected_total
            assert expected_total > OUTAGE_S * 10  # the line changed every 0.1 s
