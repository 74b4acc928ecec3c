"""What the MQTT code needs of aiomqtt that aiomqtt (2.5) does not offer publicly, in one place.

- Manual acknowledgement: paho-mqtt 2.x can hold back the PUBACK of a QoS 1 message until the
  application says so (`manual_ack_set`, `ack(mid, qos)`), which is what lets an ingest worker
  acknowledge only once its spool has the samples. aiomqtt builds the paho client itself and
  has no option for it (empicano/aiomqtt#345, its pull request #346 is not merged), so it is
  turned on on aiomqtt's paho client, `Client._client`.
- Draining the incoming queue without a task per message (`Client._queue`) and failing at once
  when the connection drops (`Client._disconnected`, the future aiomqtt sets with the error).
- Whether a failed connect was a refused login: aiomqtt raises `MqttConnectError` with the
  CONNACK code as an int (MQTT 3.1.1) or a paho `ReasonCode` (MQTT 5).
- The reason code of a PUBACK: aiomqtt's `publish` returns normally when the broker answers
  "Not authorized" (an ACL that does not let this client publish there) or "Quota exceeded",
  and the message is gone; the publisher must know, to keep the batch in its spool.

tests/uns/test_aiomqtt_gaps.py checks each against a real broker, so an aiomqtt release
that changes them fails there, not in production; replace these with the public API once there
is one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt import client as mqtt
from paho.mqtt.client import CallbackOnPublish_v2
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

Ack = Callable[[aiomqtt.Message], None]
# CONNACK codes of a refused login: MQTT 3.1.1 4 (bad user name or password) and 5 (not
# authorized); MQTT 5 0x86 and 0x87 (the same two).
_LOGIN_REFUSED = frozenset({4, 5, 0x86, 0x87})


def login_refused(exc: BaseException) -> bool:
    """Whether `exc` is the broker refusing our login: retrying at once cannot help, and a
    broker or an account that counts failed logins may lock it."""
    if not isinstance(exc, MqttConnectError):
        return False
    code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
    return code in _LOGIN_REFUSED


def manual_acks(client: aiomqtt.Client) -> Ack:
    """Turn off paho's automatic PUBACK on a client not yet connected; the function that
    acknowledges one message (QoS 0 needs none)."""
    paho = client._client
    paho.manual_ack_set(True)

    def ack(message: aiomqtt.Message) -> None:
        if message.qos > 0:
            paho.ack(message.mid, message.qos)

    return ack


def take_queued(client: aiomqtt.Client, limit: int) -> list[aiomqtt.Message]:
    """Up to `limit` messages that have already arrived, without waiting."""
    queue = client._queue
    return [queue.get_nowait() for _ in range(min(limit, queue.qsize()))]


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """Done (with the error, if any) once the connected client loses its connection."""
    return client._disconnected


def refusals(client: aiomqtt.Client) -> list[ReasonCode]:
    """Watch the PUBACKs of a client not yet connected: the list it fills with every failure
    reason code (0x80 and up) the broker answers; "No matching subscribers" is no failure."""
    refused: list[ReasonCode] = []
    paho = client._client
    # aiomqtt's own callback, of paho's callback API version 2, the one aiomqtt uses (paho's
    # dispatch casts it so too)
    forward = cast(CallbackOnPublish_v2, paho.on_publish)

    def on_publish(
        sender: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if isinstance(reason_code, ReasonCode) and reason_code.is_failure:
            refused.append(reason_code)
        forward(sender, userdata, mid, reason_code, properties)

    paho.on_publish = on_publish
    return refused
