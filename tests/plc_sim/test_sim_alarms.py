"""The simulator's limit alarms over a real socket, seen by a plain asyncua client: raised by
the signal, cleared when it is back, acknowledged only with the current EventId, and once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadConditionBranchAlreadyAcked, BadEventIdUnknown

from plc_sim.opcua_server import OpcUaServer
from plc_sim.process import Simulator
from plc_sim.spec import LineSpec

START_TIMEOUT_S = 40
ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
OVERCURRENT = "ns=2;s=line1.Alarms.conveyor.Overcurrent"


class Events:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.arrived = asyncio.Event()

    def event_notification(self, event: Any) -> None:
        self.received.append(event)
        self.arrived.set()

    async def next(self) -> Any:
        async with asyncio.timeout(10):
            while not self.received:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received.pop(0)


@pytest_asyncio.fixture
async def served(line: LineSpec, free_port: int) -> AsyncIterator[tuple[Simulator, OpcUaServer]]:
    sim = Simulator(line, seed=3)
    sim.warm_up(300)  # the pasteurizer at temperature: its low-temperature alarm is not active
    server = OpcUaServer(line, host="127.0.0.1", port=free_port, inject=sim.inject, clear=sim.clear)
    async with asyncio.timeout(START_TIMEOUT_S):
        await server.start()
    try:
        yield sim, server
    finally:
        await server.stop()


async def publish(sim: Simulator, server: OpcUaServer, **changed: float) -> None:
    values = sim.values()
    values.update({("conveyor", signal): value for signal, value in changed.items()})
    await server.publish(values, datetime.now(UTC))


async def test_a_limit_alarm_is_raised_acknowledged_once_and_cleared(
    served: tuple[Simulator, OpcUaServer],
) -> None:
    sim, server = served
    events = Events()
    async with Client(server.endpoint, timeout=5) as client:
        subscription = await client.create_subscription(50, events)
        alarm_type = client.get_node(ua.ObjectIds.ExclusiveLimitAlarmType)
        await subscription.subscribe_events(client.nodes.server, alarm_type)
        await publish(sim, server, current_a=8.5)  # normal: no event
        await publish(sim, server, current_a=16.0)
        raised = await events.next()
        assert (raised.SourceName, raised.ConditionName) == ("conveyor", "Overcurrent")
        assert raised.Severity == 850 and raised.Retain is True
        assert getattr(raised, "ActiveState/Id") is True
        assert getattr(raised, "AckedState/Id") is False
        assert "16.00 above 13" in raised.Message.Text

        condition = client.get_node(OVERCURRENT)
        with pytest.raises(BadEventIdUnknown):
            await condition.call_method(ACKNOWLEDGE, b"not-the-event", ua.LocalizedText("x"))
        await condition.call_method(ACKNOWLEDGE, raised.EventId, ua.LocalizedText("on it"))
        acked = await events.next()
        assert getattr(acked, "AckedState/Id") is True
        assert acked.Comment.Text == "on it"
        with pytest.raises((BadConditionBranchAlreadyAcked, BadEventIdUnknown)):
            await condition.call_method(ACKNOWLEDGE, acked.EventId, ua.LocalizedText("again"))

        await publish(sim, server, current_a=8.5)
        cleared = await events.next()
        assert getattr(cleared, "ActiveState/Id") is False
        assert cleared.Retain is False  # inactive and acknowledged: no longer retained
