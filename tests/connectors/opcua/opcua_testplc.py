"""Test helpers: a real asyncua server on 127.0.0.1 with a small address space, and a
sample collector. (A uniquely named module, not conftest, so that other test folders'
conftest modules cannot shadow it.)

The address space has one variable per case the connector must handle: a Double (string id),
an Int32 (numeric id), a Boolean (GUID id), a String (opaque id: non-numeric), a Double
with Bad status, and a Double reached only by browse path. Every value carries a fixed
source timestamp so tests can check that the connector keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asyncua import Server, ua

from core.sample import Point, Quality, Sample

NAMESPACE_URI = "urn:shopfloor:test-plc"
SOURCE_TS = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
SOURCE_TS_NS = int(SOURCE_TS.timestamp()) * 1_000_000_000 + 123_456_000
RUNNING_GUID = uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a")
LABEL_BYTES = b"\x01label"

logging.getLogger("asyncua").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Variable:
    """One variable of the test address space: where it lives and what it holds."""

    name: str
    nodeid: ua.NodeId
    value: object
    varianttype: ua.VariantType
    status: int = ua.StatusCodes.Good


def variables(ns: int) -> list[Variable]:
    return [
        Variable("temp", ua.NodeId("line1.temp", ns), 72.25, ua.VariantType.Double),
        Variable("count", ua.NodeId(1234, ns), 42, ua.VariantType.Int32),
        Variable("running", ua.NodeId(RUNNING_GUID, ns), True, ua.VariantType.Boolean),
        Variable("label", ua.NodeId(LABEL_BYTES, ns), "hello", ua.VariantType.String),
        Variable(
            "broken",
            ua.NodeId("line1.broken", ns),
            1.0,
            ua.VariantType.Double,
            ua.StatusCodes.BadSensorFailure,
        ),
        Variable("speed", ua.NodeId("hidden.speed.id", ns), 3.5, ua.VariantType.Double),
    ]


class TestPlc:
    """Starts, stops and restarts (on the same port) an OPC UA server."""

    __test__ = False  # not a test class despite its name

    def __init__(self) -> None:
        self.port = 0
        self.server: Server | None = None
        self.nodes: dict[str, ua.NodeId] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/shopfloor/"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        ns = await server.register_namespace(NAMESPACE_URI)
        line = await server.nodes.objects.add_object(ua.NodeId("line1", ns), f"{ns}:line1")
        for var in variables(ns):
            node = await line.add_variable(
                var.nodeid, f"{ns}:{var.name}", var.value, var.varianttype
            )
            await self.write(node.nodeid, var.value, var.varianttype, var.status, server)
            self.nodes[var.name] = node.nodeid
        await server.start()
        self.port = server.bserver.port
        self.server = server

    async def write(
        self,
        nodeid: ua.NodeId,
        value: object,
        varianttype: ua.VariantType,
        status: int = ua.StatusCodes.Good,
        server: Server | None = None,
        source_ts: datetime = SOURCE_TS,
    ) -> None:
        target = server or self.server
        assert target is not None
        dv = ua.DataValue(
            ua.Variant(value, varianttype),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=source_ts,
            ServerTimestamp=source_ts,
        )
        await target.get_node(nodeid).write_value(dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def open_connections(self) -> int:
        assert self.server is not None
        return len(self.server.bserver.clients)


async def eventually(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll `predicate` until it holds (for state that no emit announces, like stats)."""
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on: polling is the point
            await asyncio.sleep(0.02)


class Collector:
    """The `emit` of the tests: keeps every batch and wakes waiters on each one."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.points: list[Point] = []  # readings that are not one number (emit_points)
        self.batches = 0
        self._changed = asyncio.Condition()

    async def emit_points(self, points: Sequence[Point]) -> None:
        async with self._changed:
            self.points.extend(points)
            self._changed.notify_all()

    async def emit(self, batch: Sequence[Sample]) -> None:
        async with self._changed:
            self.samples.extend(batch)
            self.batches += 1
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(predicate)

    def latest(self, since: int = 0) -> dict[str, Sample]:
        """The newest sample per signal among samples[since:]."""
        return {s.signal: s for s in self.samples[since:]}

    def good_since(self, since: int, signals: Sequence[str]) -> bool:
        latest = self.latest(since)
        return all(s in latest and latest[s].quality is not Quality.BAD for s in signals)

    def all_bad_since(self, since: int, signals: Sequence[str]) -> bool:
        latest = self.latest(since)
        return all(
            s in latest and latest[s].quality is Quality.BAD and math.isnan(latest[s].value)
            for s in signals
        )
