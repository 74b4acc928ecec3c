"""MQTT ingest: an input that reads the unified namespace from a broker into the historian.

Several workers share one subscription (MQTT 5 `$share/GROUP/...`), so the broker spreads the
DDATA messages over them. The session is persistent (clean start off, a session expiry
interval) and messages are acknowledged by hand: a PUBACK goes out only after `emit` returned,
that is once the worker's spool (or the historian) has the samples. A worker that dies leaves
its unacknowledged messages in its session, and the broker sends them again when it is back
(under the same client id); what was stored twice overwrites itself (same series, timestamp).

Each worker also takes every DBIRTH (a plain subscription, QoS 1), since it needs the aliases
of any node. A plain subscription survives a broker restart and queues while the worker is
away, in order ahead of the data that needs it, so a worker that was down while an edge node
was born (and maybe gone again) still decodes what waited for it; a birth is acknowledged once
learned, and what the births taught is also kept in a file beside the worker's spool. DDATA
whose aliases are not known (a worker whose session began after the births) wait,
unacknowledged, while the worker asks the edge node for a rebirth (NCMD Node Control/Rebirth).

A worker says it is there on `presence_topics(share)[1]` once its subscriptions are in place,
and again whenever a publisher asks: a publisher started with `ingest=SHARE` publishes nothing
on a connection before that (Mosquitto forgets shared subscriptions when it restarts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.inputs import ConnectorStats, Emit
from core.reconnect import Backoff, Reconnect
from core.sample import Point
from uns import sparkplug
from uns import topics as uns
from uns.aiomqtt_gaps import Ack, login_refused, manual_acks, take_queued
from uns.broker import Broker, presence_topics

log = logging.getLogger(__name__)

PutPoints = Callable[[Sequence[Point]], Awaitable[None]]
REBIRTH_EVERY_S = 5.0  # at most one rebirth request per node in this time


class MqttIngest:
    """The input behind `shopfloor ingest`: one MQTT session of one worker."""

    def __init__(
        self,
        broker: Broker,
        put_points: PutPoints,
        *,
        client_id: str,
        births_file: Path | None = None,
        session_expiry_s: int = 86_400,
        receive_maximum: int = 2000,
        reconnect: Reconnect | None = None,
        timeout_s: float = 10.0,
        slots: frozenset[str] = frozenset(),
    ) -> None:
        self.broker = broker
        self.name = f"ingest:{client_id}"
        self.endpoint = broker.describe()
        self.stats = ConnectorStats()
        self.client_id = client_id
        self.put_points = put_points
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.reconnect = reconnect or Reconnect()
        self.backoff = Backoff(self.reconnect)
        self.timeout_s = timeout_s
        self.messages = 0
        self.rejected = 0
        self._host = sparkplug.Host(births_file)
        self._waiting: list[aiomqtt.Message] = []
        self._asked: dict[tuple[str, str], float] = {}
        self._told: set[str] = set()  # refusals logged, once each
        self.slots = slots  # the client ids of the group's workers; empty: not checked
        self._ask, self._here = presence_topics(broker.share)

    async def run(self, emit: Emit) -> None:
        """Ingest until cancelled, reconnecting with backoff when the broker goes away."""
        while True:
            try:
                await self._session(emit)
            except aiomqtt.MqttError as exc:
                self.stats.connected = False
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                self._waiting.clear()  # not acknowledged: the broker sends them again
                if login_refused(exc):
                    delay = self.reconnect.auth_retry_s
                    log.error(
                        "%s: the broker refused the login (%s): check MQTT_USERNAME and "
                        "MQTT_PASSWORD; trying again in %.0f s (reconnect.auth_retry_s)",
                        self.endpoint,
                        exc,
                        delay,
                    )
                else:
                    delay = self.backoff.next()
                    log.warning("%s: %s; reconnecting in %.1f s", self.endpoint, exc, delay)
                await asyncio.sleep(delay)
                self.stats.reconnects += 1

    def _client(self) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = self.receive_maximum
        return self.broker.client(
            self.client_id, clean_start=False, properties=properties, timeout=self.timeout_s
        )

    async def _session(self, emit: Emit) -> None:
        group, share = self.broker.group, self.broker.share
        client = self._client()
        ack = manual_acks(client)  # a PUBACK only once `emit` has the samples
        async with client:
            await client.subscribe(f"{sparkplug.NAMESPACE}/{group}/NBIRTH/+", qos=1)
            await client.subscribe(f"{sparkplug.NAMESPACE}/{group}/DBIRTH/+/+", qos=1)
            for kind in ("DDATA/+/+", "DDEATH/+/+", "NDEATH/+"):
                await client.subscribe(
                    f"$share/{share}/{sparkplug.NAMESPACE}/{group}/{kind}", qos=1
                )
            await client.subscribe(f"$share/{share}/{uns.POINTS}/+", qos=1)
            await client.subscribe(self._ask, qos=0)
            if self.slots:
                await client.subscribe(self._here, qos=0)
            await self._say_here(client)
            self.stats.connected = True
            self.backoff.reset()
            log.info("%s: ingesting as %s", self.endpoint, self.client_id)
            messages = client.messages
            while True:
                batch = [await anext(messages)]
                batch += take_queued(client, self.receive_maximum - 1)
                await self._take(client, batch, emit, ack)

    async def _take(
        self, client: aiomqtt.Client, batch: list[aiomqtt.Message], emit: Emit, ack: Ack
    ) -> None:
        """Decode a batch, hand it on, and only then acknowledge it."""
        readings = sparkplug.Readings()
        points: list[Point] = []
        done: list[aiomqtt.Message] = []
        births = False
        for message in batch:
            levels = message.topic.value.split("/")
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                if levels[0] == sparkplug.NAMESPACE and levels[2] == "DDATA":
                    self._waiting.append(message)
                    continue
                if levels[0] == sparkplug.NAMESPACE:
                    births |= levels[2] == "DBIRTH"
                    self._state(levels, payload, readings)
                elif message.topic.value == self._ask:
                    await self._say_here(client)
                    continue  # QoS 0
                elif message.topic.value == self._here:
                    self._check_slot(payload.decode("utf-8", "replace"))
                    continue  # QoS 0
                else:
                    points += uns.parse_points(levels[-1], payload)
            except ValueError as exc:  # SparkplugError is one
                self.rejected += 1
                self.stats.last_error = f"{message.topic.value}: {exc}"
                log.error("dropped a message on %s: %s", message.topic.value, exc)
            done.append(message)
        if births or self._waiting:
            await self._decode_waiting(client, done, readings)
        self._tell(readings.refused)
        points += readings.points
        if points:
            await self.put_points(points)
        if readings.samples:
            await emit(readings.samples)
        self.stats.samples += len(readings)
        self.messages += len(done)
        for message in done:
            ack(message)

    def _state(self, levels: list[str], payload: bytes, readings: sparkplug.Readings) -> None:
        """A birth or death: what it teaches, and the readings it holds (a birth's values, a
        death's bad markers)."""
        group, kind, node = levels[1], levels[2], levels[3]
        device = levels[4] if len(levels) > 4 else ""
        if kind == "NBIRTH":
            self._host.node_born(group, node, payload)
            return
        if kind == "DBIRTH":
            born = self._host.learn(group, node, device, payload)  # in its file
            for tag in [t for t in self.stats.bad_tags if t.startswith(f"{device}/")]:
                del self.stats.bad_tags[tag]
            readings.extend(born)
            return
        death = (
            self._host.node_death(group, node, payload)
            if kind == "NDEATH"
            else self._host.device_death(group, node, device)
        )
        if death is None:
            log.info("%s/%s: NDEATH of an earlier session, ignored", group, node)
            return
        markers, reason = death
        for sample in markers.samples:
            self.stats.bad_tags[f"{sample.machine}/{sample.signal}"] = reason
        log.warning("%s: %d signals marked bad", reason, len(markers))
        readings.extend(markers)

    def _check_slot(self, worker: str) -> None:
        """Report a worker of this share group whose client id is not a configured slot: its
        session takes a share of the data, and nobody may ever take its queue out again."""
        if worker in self.slots or f"worker {worker}" in self.stats.bad_tags:
            return
        why = (
            f"not one of the configured slots ({', '.join(sorted(self.slots))}): it takes a "
            "share of the data into its own session; stop it, or add it to --slots"
        )
        self.stats.bad_tags[f"worker {worker}"] = why
        self.stats.errors += 1
        self.stats.last_error = f"worker {worker}: {why}"
        log.error("share group %s has a worker %s that is %s", self.broker.share, worker, why)

    def _tell(self, refused: list[str]) -> None:
        """Log and count each refused metric once (not on every message that carries it)."""
        for text in refused:
            if text not in self._told:
                self._told.add(text)
                self.stats.errors += 1
                self.stats.last_error = text
                log.error("not stored: %s", text)

    async def _say_here(self, client: aiomqtt.Client) -> None:
        """Tell publishers that this group is subscribed (a live message, never retained: it
        vouches for this broker run only)."""
        await client.publish(self._here, self.client_id.encode(), qos=0, timeout=self.timeout_s)

    async def _decode_waiting(
        self, client: aiomqtt.Client, done: list[aiomqtt.Message], readings: sparkplug.Readings
    ) -> None:
        still: list[aiomqtt.Message] = []
        for message in self._waiting:
            _, group, _, node, device = message.topic.value.split("/")
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if not self._host.knows(group, node, device):
                still.append(message)
                await self._ask_rebirth(client, group, node)
                continue
            try:
                readings.extend(self._host.readings(group, node, device, payload))
            except sparkplug.SparkplugError as exc:
                if "unknown alias" in str(exc):  # a signal born after the birth we hold
                    still.append(message)
                    await self._ask_rebirth(client, group, node)
                    continue
                self.rejected += 1
                log.error("dropped a message on %s: %s", message.topic.value, exc)
            done.append(message)
        self._waiting = still

    async def _ask_rebirth(self, client: aiomqtt.Client, group: str, node: str) -> None:
        now = time.monotonic()
        if now - self._asked.get((group, node), -REBIRTH_EVERY_S) < REBIRTH_EVERY_S:
            return
        self._asked[(group, node)] = now
        log.info("asking %s/%s for a rebirth", group, node)
        topic = sparkplug.topic(group, "NCMD", node)
        await client.publish(topic, sparkplug.rebirth_request(), qos=0, timeout=self.timeout_s)
