"""What uns.aiomqtt_gaps takes from aiomqtt's insides, checked against a real
Mosquitto: an aiomqtt release that changes it fails here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from testbed.mosquitto import Mosquitto
from tests.eventually import eventually
from uns.aiomqtt_gaps import disconnected, manual_acks, refusals, take_queued
from uns.broker import open_broker

pytestmark = pytest.mark.mosquitto


def persistent(broker: Mosquitto, identifier: str) -> aiomqtt.Client:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 600
    return open_broker(broker.url).client(identifier, clean_start=False, properties=properties)


async def publish(broker: Mosquitto, *payloads: bytes) -> None:
    async with open_broker(broker.url).client("publisher") as client:
        for payload in payloads:
            await client.publish("gaps/t", payload, qos=1)


async def received(client: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    messages = client.messages
    async with asyncio.timeout(10):
        return [await anext(messages) for _ in range(count)]


async def test_a_message_not_acknowledged_comes_again_and_an_acknowledged_one_does_not(
    mosquitto: Mosquitto,
) -> None:
    client = persistent(mosquitto, "worker")
    ack = manual_acks(client)
    async with client:
        await client.subscribe("gaps/t", qos=1)
        await publish(mosquitto, b"one", b"two")
        one, _ = await received(client, 2)
        ack(one)  # its PUBACK goes out before the DISCONNECT, in order
    again = persistent(mosquitto, "worker")
    manual_acks(again)
    async with again:
        [message] = await received(again, 1)
        assert message.payload == b"two"  # sent again: its PUBACK never went out
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(again.messages)  # and "one" does not come back


async def test_take_queued_takes_what_has_arrived_in_order_up_to_the_limit(
    mosquitto: Mosquitto,
) -> None:
    async with open_broker(mosquitto.url).client("reader") as client:
        await client.subscribe("gaps/t", qos=1)
        await publish(mosquitto, *(str(n).encode() for n in range(5)))
        await eventually(lambda: len(client.messages) == 5, "five messages queued")
        assert [m.payload for m in take_queued(client, 3)] == [b"0", b"1", b"2"]
        assert [m.payload for m in take_queued(client, 10)] == [b"3", b"4"]
        assert take_queued(client, 10) == []


async def test_disconnected_is_done_with_the_error_when_the_broker_goes_away(
    mosquitto: Mosquitto,
) -> None:
    async with open_broker(mosquitto.url).client("watcher") as client:
        lost = disconnected(client)
        assert not lost.done()
        await asyncio.to_thread(mosquitto.halt)
        async with asyncio.timeout(10):
            with pytest.raises(aiomqtt.MqttError):
                await asyncio.shield(lost)
        with pytest.raises(aiomqtt.MqttError):
            await client.publish("gaps/t", b"x", qos=1, timeout=1)


async def test_refusals_holds_the_failure_reason_codes_of_pubacks_only(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n")
    with Mosquitto(extra_config=f"acl_file {acl}\n") as broker:
        client = open_broker(broker.url).client("refused")
        refused = refusals(client)
        async with client:
            await client.publish("allowed/t", b"x", qos=1)  # "No matching subscribers": fine
            assert refused == []
            with pytest.raises(aiomqtt.MqttError):  # Mosquitto also drops the connection
                await client.publish("denied/t", b"x", qos=1)
                await asyncio.shield(disconnected(client))
    assert [r.getName() for r in refused] == ["Not authorized"]
