"""Publishing to an MQTT broker, as one more historian backend behind the spool and the writer.

The writer hands over batches exactly as it does to InfluxDB; a batch is acknowledged (and
leaves the spool) only once the broker has acknowledged every message of it (QoS 1 PUBACK). A
broker that is down or too slow is a retryable HistorianError: the spool holds the data, the
writer backs off and retries, and the retry opens a new Sparkplug session (next bdSeq, NBIRTH,
DBIRTHs) before the data. A batch cut off mid-way is sent again whole: the host side overwrites
the same series and timestamp, so it adds no duplicates.

With `ingest=GROUP` in the broker URL, a new connection publishes only once a worker of that
share group has answered on it (see uns.broker): after a broker restart the group's shared
subscription is gone until its workers are back, and what the broker acknowledged meanwhile
would reach nobody. Until then the connection attempt fails as a retryable error, and the
spool holds the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from core.reconnect import AUTH_RETRY_S
from core.sample import Point, Sample
from core.storage import HistorianError, Sink
from uns import sparkplug
from uns import topics as uns
from uns.aiomqtt_gaps import disconnected, login_refused, refusals
from uns.broker import Broker, presence_topics

log = logging.getLogger(__name__)

Message = tuple[str, bytes]


class MqttPublisher(Sink):
    """Samples as Sparkplug B (every sample) and JSON (the latest of each signal) on a broker."""

    def __init__(
        self,
        broker: Broker,
        *,
        timeout_s: float = 10.0,
        inflight: int = 100,
        auth_retry_s: float = AUTH_RETRY_S,
    ) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.inflight = inflight
        self.auth_retry_s = auth_retry_s
        self._no_login_until = -math.inf  # monotonic time: a refused login waits until then
        self.edge = sparkplug.EdgeNode(broker.group, broker.node)
        self.sessions = 0
        self.rebirths = 0
        self._client: aiomqtt.Client | None = None
        self._listener: asyncio.Task[None] | None = None
        self._ingest_here = asyncio.Event()
        self._refused: list[ReasonCode] = []

    def describe(self) -> str:
        return f"{self.broker.describe()} (Sparkplug {self.broker.group}/{self.broker.node})"

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        client = await self._connected()
        messages: list[tuple[Message, bool]] = []
        if "sparkplug" in self.broker.formats:
            try:
                messages += [(m, False) for m in self.edge.data(samples)]
            except sparkplug.SparkplugError as exc:
                raise HistorianError(str(exc)) from None
        if "json" in self.broker.formats:
            messages += [(m, True) for m in uns.latest(samples, self.broker.area)]
        await self._publish(client, messages)

    async def write_points(self, points: Sequence[Point]) -> None:
        client = await self._connected()
        await self._publish(client, [(m, False) for m in uns.points(points)])

    async def close(self) -> None:
        """A clean stop: NDEATH first (the will is not sent on a normal disconnect)."""
        client = self._client
        if client is not None and "sparkplug" in self.broker.formats:
            with contextlib.suppress(aiomqtt.MqttError, HistorianError):
                await self._publish(client, [(self.edge.death(), False)])
        await self._drop()

    async def _connected(self) -> aiomqtt.Client:
        """The current session, or a new one with its births published."""
        if self._client is not None:
            return self._client
        wait_s = self._no_login_until - time.monotonic()
        if wait_s > 0:
            raise HistorianError(
                f"broker {self.broker.describe()} refused the login; not trying again for "
                f"{wait_s:.0f} s (check MQTT_USERNAME and MQTT_PASSWORD)",
                retryable=True,
            )
        self.edge.new_session()
        death_topic, death = self.edge.death()
        client = self.broker.client(
            f"shopfloor-edge-{self.broker.group}-{self.broker.node}",
            will=aiomqtt.Will(death_topic, death, qos=1),
            timeout=self.timeout_s,
            max_inflight_messages=self.inflight,
        )
        client.pending_calls_threshold = 1 << 20  # a batch is many publishes in flight
        self._refused = refusals(client)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            if login_refused(exc):
                self._no_login_until = time.monotonic() + self.auth_retry_s
                log.error(
                    "%s refused the login (%s): check MQTT_USERNAME and MQTT_PASSWORD; "
                    "trying again in %.0f s, the spool holds the data meanwhile",
                    self.broker.describe(),
                    exc,
                    self.auth_retry_s,
                )
            raise self._unreachable(exc) from None
        self._client = client
        self.sessions += 1
        try:
            await self._listen(client)
            if "sparkplug" in self.broker.formats:
                await self._publish(client, [(m, False) for m in self.edge.birth()])
        except aiomqtt.MqttError as exc:
            await self._drop()
            raise self._unreachable(exc) from None
        except BaseException:
            await self._drop()
            raise
        log.info("%s: connected, Sparkplug bdSeq %d", self.describe(), self.edge.bd_seq)
        return client

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Subscribe to what this node answers (rebirth requests, the ingest group's presence)
        and, with `ingest=GROUP`, wait until a worker of the group is there."""
        topics = []
        if "sparkplug" in self.broker.formats:
            topics.append(sparkplug.topic(self.broker.group, "NCMD", self.broker.node))
        if self.broker.ingest:
            ask, here = presence_topics(self.broker.ingest)
            topics.append(here)
        if not topics:
            return
        self._ingest_here.clear()
        await client.subscribe([(t, 1) for t in topics])
        self._listener = asyncio.create_task(self._commands(client), name="mqtt-listener")
        if not self.broker.ingest:
            return
        await client.publish(ask, b"", qos=1, timeout=self.timeout_s)
        try:
            await asyncio.wait_for(self._ingest_here.wait(), self.timeout_s)
        except TimeoutError:
            raise HistorianError(
                f"no `shopfloor ingest` of share group {self.broker.ingest!r} answered on "
                f"{self.broker.describe()} within {self.timeout_s:.0f} s; the data waits in the "
                "spool until one does",
                retryable=True,
            ) from None

    async def _commands(self, client: aiomqtt.Client) -> None:
        """Answer a host's rebirth request (NCMD Node Control/Rebirth); note the ingest group's
        presence."""
        with contextlib.suppress(aiomqtt.MqttError, HistorianError):
            async for message in client.messages:
                if not message.topic.matches(f"{sparkplug.NAMESPACE}/+/NCMD/+"):
                    self._ingest_here.set()
                elif isinstance(message.payload, bytes) and sparkplug.is_rebirth_request(
                    message.payload
                ):
                    log.info("%s: rebirth requested", self.describe())
                    self.rebirths += 1
                    await self._publish(client, [(m, False) for m in self.edge.birth()])

    async def _publish(self, client: aiomqtt.Client, messages: list[tuple[Message, bool]]) -> None:
        """Publish in order (seq order) and wait for every PUBACK."""
        sends = [
            asyncio.ensure_future(
                client.publish(topic, payload, qos=1, retain=retain, timeout=self.timeout_s)
            )
            for (topic, payload), retain in messages
        ]
        try:
            await _unless_disconnected(client, asyncio.gather(*sends))
        except (aiomqtt.MqttError, OSError) as exc:
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            if self._client is client:
                await self._drop()
            raise self._refusal(len(messages)) or self._unreachable(exc) from None
        refused = self._refusal(len(messages))
        if refused:
            raise refused

    def _refusal(self, sent: int) -> HistorianError | None:
        """What the broker refused (Mosquitto then also drops the connection; EMQX by default
        goes on): no delivery, so the batch stays in the spool and is retried."""
        if not self._refused:
            return None
        reasons = sorted({str(r) for r in self._refused})
        count, self._refused[:] = len(self._refused), []
        return HistorianError(
            f"broker {self.broker.describe()} refused {count} of {sent} messages "
            f"({', '.join(reasons)}): does its ACL let this client publish to "
            f"{sparkplug.NAMESPACE}/{self.broker.group}/#, uns/# and shopfloor/v1/#? The data "
            "stays in the spool",
            retryable=True,
        )

    def _unreachable(self, exc: BaseException) -> HistorianError:
        return HistorianError(f"broker {self.broker.describe()}: {exc}", retryable=True)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        listener, self._listener = self._listener, None
        if listener is not None and listener is not asyncio.current_task():
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                await asyncio.wait_for(client.__aexit__(None, None, None), self.timeout_s)


async def _unless_disconnected(client: aiomqtt.Client, sends: asyncio.Future[list[None]]) -> None:
    """Wait for the PUBACKs, failing at once if the connection drops (aiomqtt would wait for
    each PUBACK until its timeout)."""
    lost = disconnected(client)
    await asyncio.wait((sends, lost), return_when=asyncio.FIRST_COMPLETED)
    if sends.done():
        sends.result()
        return
    sends.cancel()
    await asyncio.gather(sends, return_exceptions=True)
    error = lost.exception() if not lost.cancelled() else None
    raise aiomqtt.MqttError(f"disconnected: {error or 'the broker closed the connection'}")
