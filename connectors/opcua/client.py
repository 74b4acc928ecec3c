"""The OPC UA input: sessions, subscriptions or polling, reconnect.

The tags are split over subscriptions and, past `max_items_per_session`, over sessions, within
the limits the server announces (`capacity`). Each session is its own unit of failure: it
connects, watches, marks its tags BAD and reconnects on its own. asyncua's own reconnect is not
used: after a server restart a reused Client can hang, so each attempt builds a fresh Client and
fresh subscriptions. Notifications bypass asyncua's
`Subscription` class (it builds several objects and a task per notification) and its publish
loop (one request at a time): `pipeline` keeps several Publish requests outstanding, and the
raw PublishResult goes to `_Notifications.on_publish`, which turns a whole message into samples.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asyncua import Client, ua
from asyncua.client.ua_session import UaSession
from asyncua.common.utils import NotEnoughData

from connectors.opcua.alarms import AlarmEvents
from connectors.opcua.backfill import Filled, backfill, gap_start
from connectors.opcua.buffer import SampleBuffer
from connectors.opcua.capacity import Capacity, ServerLimits, read_limits, sessions_for, shares
from connectors.opcua.config import Config, Deadband
from connectors.opcua.datavalue import (
    Decoded,
    NotStored,
    Other,
    Series,
    checked_value,
    decoded,
    readings,
)
from connectors.opcua.enums import Names, enum_names
from connectors.opcua.latest import LatestValues
from connectors.opcua.pipeline import PublishPipeline, pipeline_depth
from connectors.opcua.publish import Changes
from connectors.opcua.resolve import Moved, chunks, resolve_all
from connectors.opcua.sampling import by_exception, sampling_warning
from connectors.opcua.security import IMPLICIT_NONE_WARNING
from connectors.opcua.session import (
    SESSION_FAILURES,
    SESSION_TIMEOUT_MS,
    close_session,
    describe_session,
    explain,
    is_refusal,
    open_session,
)
from core.inputs import ConnectorStats, Emit, EmitPoints
from core.reconnect import Backoff
from core.sample import Point, Quality, Sample, SampleBatch, SeriesKey
from core.schema import EVENTS, EventKind, telemetry_point

_log = logging.getLogger(__name__)

# Refusals that say the node itself cannot be read: polling would fail the same way.
_NODE_ERRORS = frozenset(
    {
        ua.StatusCodes.BadNodeIdUnknown,
        ua.StatusCodes.BadNodeIdInvalid,
        ua.StatusCodes.BadAttributeIdInvalid,
        ua.StatusCodes.BadNotReadable,
        ua.StatusCodes.BadUserAccessDenied,
    }
)
# A session the server closed or forgot (restart, timeout): asyncua's publish loop logs a
# traceback for it every second until the session is replaced.
_SESSION_GONE = frozenset(
    {
        ua.StatusCodes.BadSessionClosed,
        ua.StatusCodes.BadSessionIdInvalid,
        ua.StatusCodes.BadSessionNotActivated,
    }
)
_DEADBAND_TYPES = {"absolute": ua.DeadbandType.Absolute, "percent": ua.DeadbandType.Percent}
_SERVER_TIME = ua.NodeId(ua.Int32(ua.ObjectIds.Server_ServerStatus_CurrentTime))
STALE_MARGIN_S = 3.0  # default stale_after_s: two publishing intervals and this
# Sampling 0 (on every change): queues are sized as if a value changed this often.
EXCEPTION_SAMPLING_MS = 100.0

Item = tuple[int, ua.NodeId]
"""A tag index (also the monitored item's client handle) and its resolved NodeId."""


class _KnownLossFilter(logging.Filter):
    """Drops asyncua's own reports of a closed connection (a traceback per outage from its
    publish loop, warnings from the teardown) and of refused requests: the connector reports
    each loss and refusal once itself, with the fix."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ConnectionError | NotEnoughData):
            return False  # NotEnoughData: a refused secure channel (session.ChannelRefused)
        if isinstance(error, ua.UaStatusCodeError) and error.code in _SESSION_GONE:
            return False  # the server closed the session: the watch reports it, one line
        message = record.getMessage()
        # A refused request (e.g. a wrong login) is reported by the caller, with its fix.
        return "connection is closed" not in message and not message.startswith(
            ("ServiceFault", "Got error status from server")
        )


_KNOWN_LOSS = _KnownLossFilter()


def quiet_asyncua_loggers() -> None:
    """asyncua logs every request at INFO; keep its warnings and errors, minus the known loss."""
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    for name in (
        "asyncua.client.ua_session.UaSession",
        "asyncua.client.ua_client.UaClient",
        "asyncua.client.ua_client.UASocketProtocol",
    ):
        logging.getLogger(name).addFilter(_KNOWN_LOSS)  # a no-op when already added


class _Loss:
    """The first reason a session is broken, set from callbacks and background loops."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""
        self.last_answer: float | None = None  # loop time of the last publish answer
        self.heard_ns = 0  # wall time of the last answer of any kind: where a backfill starts

    def answered(self) -> None:
        self.last_answer = asyncio.get_running_loop().time()
        self.heard_ns = time.time_ns()

    def report(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


@dataclass(eq=False)
class _Slot:
    """One session's share of the tags, and its state across reconnects."""

    number: int
    indexes: list[int]
    connected: bool = False
    was_connected: bool = False
    marked_bad: bool = False
    gap_from_ns: int = 0  # wall time from which the server's history is to be read (0: none)


class OpcUaInput:
    """Reads the configured tags of one OPC UA server until cancelled.

    Satisfies `core.inputs.Input`.
    """

    def __init__(self, config: Config, *, site: str, line: str) -> None:
        self.name = config.name
        self.endpoint = config.endpoint
        self.stats = ConnectorStats()
        self._config = config
        self._series = [
            Series(site, tag.line or line, tag.machine, tag.signal) for tag in config.tags
        ]
        # Room on the server for every sample taken while a publish is late, up to the time
        # after which the session counts as lost: a slow publish loses nothing.
        sampling_ms = config.sampling_interval_ms or EXCEPTION_SAMPLING_MS
        self._queue_size = max(
            math.ceil(config.publishing_interval_ms / sampling_ms),
            math.ceil(self.stale_after_s() * 1000 / sampling_ms),
        )
        self._reasons: dict[int, str] = {}
        self._told: set[tuple[int, str]] = set()  # (tag, BAD reason) logged and counted once
        self._said: set[str] = set()  # connector-wide problems logged once
        self._enums: dict[int, Names] = {}  # tag index -> its enumeration's value names
        self._namespaces: dict[int, str] = {}  # namespace index -> URI when first seen
        self.emit_points: EmitPoints | None = None  # set by the agent (core.inputs.TextInput)
        self._keys = [series.key for series in self._series]
        self._latest = LatestValues(self._keys, [config.max_age_of(tag) for tag in config.tags])
        self._slots: list[_Slot] = []
        self._group: asyncio.TaskGroup | None = None  # where the sessions run
        self._slow_sampling_told = False
        self._by_exception: set[int] = set()  # tags sampled 0 by default (module sampling)
        self._asked_ms: dict[int, float] = {}  # tag index -> sampling asked, all sessions
        self._sampling_warned = False
        self._closing: set[asyncio.Task[None]] = set()  # lost sessions being closed
        self._alarms = (
            None if config.alarms is None else AlarmEvents(config.alarms, site=site, line=line)
        )
        self._site, self._line = site, line

    async def run(self, emit: Emit) -> None:
        """Connect, read, and on any failure mark all tags BAD and reconnect with backoff."""
        quiet_asyncua_loggers()
        cfg = self._config
        if cfg.security is None:
            _log.warning("%s: %s", self.name, IMPLICIT_NONE_WARNING)
        flush_s = (
            cfg.publishing_interval_ms / 1000 if cfg.mode == "subscribe" else cfg.poll_interval_s
        )
        buffer = SampleBuffer(
            emit,
            self.stats,
            flush_interval_s=flush_s,
            limit=cfg.buffer_samples,
            # a publish held up longer would look like a silent server (stale_after_s)
            max_wait_s=self.stale_after_s() / 2,
        )
        buffer.emit_points = self.emit_points
        if self._alarms is not None:  # alarm and backfill events: the writer's spool
            self._alarms.emit = self.emit_points
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(buffer.run(), name=f"opcua-flush-{self.name}")
                self._group = group
                self._start(buffer, list(range(len(self._series))))
                interval = self._latest.check_interval_s()
                if interval is not None:
                    group.create_task(
                        self._keep_alive(buffer, interval), name=f"opcua-ka-{self.name}"
                    )
        finally:
            await asyncio.gather(*self._closing)  # sessions lost before, each bounded in time

    async def _keep_alive(self, buffer: SampleBuffer, interval_s: float) -> None:
        """Record again every tag whose last point is older than its max age."""
        while True:
            await asyncio.sleep(interval_s)
            again = self._latest.due(time.monotonic())
            if again:
                await buffer.put(again, flush=True)

    def _start(self, buffer: SampleBuffer, indexes: list[int]) -> None:
        """Run a session for `indexes`; the first one plans the others (`_plan`)."""
        assert self._group is not None
        slot = _Slot(len(self._slots), indexes)
        self._slots.append(slot)
        self._group.create_task(
            self._connect_forever(buffer, slot), name=f"opcua-{self.name}-{slot.number}"
        )

    def _plan(
        self, slot: _Slot, buffer: SampleBuffer, capacity: Capacity, limits: ServerLimits
    ) -> None:
        """On the first session's first connect: split the tags over as many sessions as the
        server's limits and `max_items_per_session` call for, and start the others."""
        if len(self._slots) > 1 or slot.number:
            return
        per_session = capacity.per_session(self._config.max_items_per_session)
        count = sessions_for(len(slot.indexes), per_session, limits.sessions)
        if count == 1:
            return
        first, *others = shares(slot.indexes, count)
        slot.indexes = first
        for indexes in others:
            self._start(buffer, indexes)
        _log.info(
            "%s: %d tags over %d sessions (up to %d items per session, %d per subscription)",
            self.name,
            len(self._series),
            count,
            per_session,
            capacity.per_subscription,
        )

    async def _connect_forever(self, buffer: SampleBuffer, slot: _Slot) -> None:
        backoff = Backoff(self._config.reconnect)
        while True:
            wait_s = None
            try:
                await self._session(buffer, backoff, slot)
            except SESSION_FAILURES as exc:
                if is_refusal(exc):
                    wait_s = self._config.reconnect.auth_retry_s
                reason = explain(exc, timeout_s=self._config.timeout_s, auth=self._config.auth)
                self._failed(reason, wait_s)
            except Exception as exc:  # never let one bad session end the connector
                _log.exception("%s: unexpected error in session", self.name)
                self._failed(repr(exc))
            await self._mark_all_bad(buffer, slot)
            await asyncio.sleep(backoff.next() if wait_s is None else wait_s)

    async def _session(self, buffer: SampleBuffer, backoff: Backoff, slot: _Slot) -> None:
        """One connection: a fresh Client, connected under a timeout, read until it breaks."""
        cfg = self._config
        loss = _Loss()
        client = Client(self.endpoint, timeout=cfg.timeout_s, watchdog_intervall=cfg.timeout_s)
        client.session_timeout = SESSION_TIMEOUT_MS

        async def on_connection_lost(exc: Exception) -> None:
            loss.report(f"connection lost: {exc!r}")

        client.connection_lost_callback = on_connection_lost
        _, notes = await open_session(
            self.endpoint, cfg.security, cfg.auth, timeout_s=cfg.timeout_s, client=client
        )
        for note in notes:
            _log.warning("%s: %s", self.name, note)
        try:
            await self._read(client, buffer, backoff, loss, slot)
        except asyncio.CancelledError:  # a clean stop: close the session before returning
            self._disconnected(slot)
            await close_session(client, cfg.timeout_s)
            raise
        except BaseException:
            # A lost session: its tags are marked bad now, not after a close that a frozen
            # server makes wait for timeout_s.
            self._disconnected(slot)
            if loss.heard_ns:
                slot.gap_from_ns = gap_start(loss.heard_ns, cfg.publishing_interval_ms)
            closing = asyncio.create_task(close_session(client, cfg.timeout_s))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            raise

    async def _read(
        self, client: Client, buffer: SampleBuffer, backoff: Backoff, loss: _Loss, slot: _Slot
    ) -> None:
        """Read the server's limits, resolve, subscribe and/or poll, then watch the session
        until it breaks."""
        cfg = self._config
        limits = await read_limits(client, cfg.timeout_s)
        capacity = Capacity.of(limits, max_per_subscription=cfg.max_items_per_subscription)
        self._plan(slot, buffer, capacity, limits)
        resolved = items = await self._resolve(client, buffer, slot.indexes, capacity)
        await self._read_enum_names(client, items, capacity)
        self._pipeline(client, loss, slot, len(items) if cfg.mode == "subscribe" else 0, capacity)
        if cfg.mode == "subscribe":
            await self._choose_sampling(client, items, capacity, limits)
            items = await self._subscribe(client, items, buffer, loss, capacity)
        if self._alarms is not None and slot.number == 0:
            await self._alarms.subscribe(
                client,
                publishing_interval_ms=cfg.publishing_interval_ms,
                keepalive_count=self.keepalive_count(),
                timeout_s=cfg.timeout_s,
                on_publish=loss.answered,
            )
        tasks = []
        if items:
            tasks.append(asyncio.create_task(self._poll(client, items, buffer, loss, capacity)))
        if cfg.backfill is not None and slot.gap_from_ns and resolved:
            gap = (slot.gap_from_ns, time.time_ns())
            tasks.append(asyncio.create_task(self._backfill(client, slot, resolved, gap, buffer)))
        try:
            self._connected(backoff, slot)
            await self._watch(client, loss)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    def _pipeline(
        self, client: Client, loss: _Loss, slot: _Slot, items: int, capacity: Capacity
    ) -> None:
        """The session's publish loop (`pipeline`): its depth from the subscriptions to come;
        a request unanswered past the stale time and a timeout is sent again."""
        subscriptions = math.ceil(items / capacity.per_subscription)
        if self._alarms is not None and slot.number == 0:
            subscriptions += 1
        PublishPipeline(
            client.uaclient.session,
            depth=pipeline_depth(subscriptions),
            timeout_s=self.stale_after_s() + self._config.timeout_s,
            on_loss=loss.report,
            on_lost_message=self._lost_message,
        ).install()

    def _lost_message(self, reason: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = reason
        _log.warning("%s: %s", self.name, reason)

    async def _backfill(
        self,
        client: Client,
        slot: _Slot,
        items: list[Item],
        gap: tuple[int, int],
        buffer: SampleBuffer,
    ) -> None:
        """Fill the outage from the server's history (backfill.py), then say what was done."""
        cfg = self._config
        assert cfg.backfill is not None

        async def put(batch: SampleBatch) -> None:
            await buffer.put(batch, flush=True)

        try:
            filled = await backfill(
                client, cfg.backfill, items, self._series, gap, cfg.timeout_s, put
            )
        except SESSION_FAILURES as exc:  # the session's loss is the watch's to report
            _log.debug("%s: backfill stopped: %s", self.name, exc)
            return
        slot.gap_from_ns = 0
        await self._report_backfill(filled, len(items), gap)

    async def _report_backfill(self, filled: Filled, tags: int, gap: tuple[int, int]) -> None:
        span_s = (gap[1] - gap[0]) / 1e9
        text = (
            f"backfilled {filled.values} values of {tags - filled.unfilled_tags} tags over "
            f"{span_s:.1f} s from the server's history; {filled.unfilled_tags} tags could not "
            f"be read, {filled.cut_s:.1f} s older than backfill.max_span_s not asked for"
        )
        _log.info("%s: %s", self.name, text)
        if self.emit_points is None:
            return
        tags_of = {"site": self._site, "line": self._line, "machine": self.name}
        fields: dict[str, float | int | bool | str] = {
            "text": text,
            "active": False,
            "backfilled": filled.values,
            "unfilled": filled.unfilled_tags,
            "unfilled_s": filled.cut_s,
            "duration_s": span_s,
        }
        point = Point(EVENTS.name, {**tags_of, "kind": EventKind.BACKFILL.value}, fields, gap[1])
        await self.emit_points([point])

    async def _resolve(
        self, client: Client, buffer: SampleBuffer, indexes: list[int], capacity: Capacity
    ) -> list[Item]:
        """Resolve the session's tags; tags that name no node get one BAD sample and are left
        out."""
        cfg = self._config
        addresses = [cfg.tags[index].address() for index in indexes]
        resolved = await resolve_all(
            client,
            addresses,
            timeout_s=cfg.timeout_s,
            batch=capacity.per_translate,
            pinned=self._namespaces,
        )
        items: list[Item] = []
        unresolved: list[Sample] = []
        now = time.time_ns()
        for index, target in zip(indexes, resolved, strict=True):
            if isinstance(target, Moved):  # said once below, for all its tags
                self._note(index, target, quiet=True)
                unresolved.append(self._marker(index, now))
            elif isinstance(target, str):
                self._note(index, f"{cfg.tags[index].node}: {target}")
                unresolved.append(self._marker(index, now))
            else:
                items.append((index, target))
        self._say_moved([t for t in resolved if isinstance(t, Moved)])
        await buffer.put(unresolved, flush=True)
        return items

    async def _read_enum_names(self, client: Client, items: list[Item], capacity: Capacity) -> None:
        """The value names of the enumeration tags; a server that will not say stores their
        codes only (logged once), the session goes on."""
        timeout_s = self._config.timeout_s
        try:
            self._enums.update(
                await enum_names(client, items, timeout_s=timeout_s, batch=capacity.per_read)
            )
        except (TimeoutError, ua.UaError) as exc:
            why = f"enumeration names not read ({type(exc).__name__}: {exc}): codes only"
            if why not in self._said:
                self._said.add(why)
                _log.warning("%s: %s", self.name, why)

    def _say_moved(self, moved: list[Moved]) -> None:
        """One line (and one error) per renumbered namespace, however many tags it holds."""
        for reason in sorted(set(moved)):
            if reason in self._said:  # said in an earlier session
                continue
            self._said.add(reason)
            self.stats.errors += 1
            self.stats.last_error = reason
            _log.error("%s: %s; %d tags marked BAD", self.name, reason, moved.count(reason))

    async def _subscribe(
        self,
        client: Client,
        items: list[Item],
        buffer: SampleBuffer,
        loss: _Loss,
        capacity: Capacity,
    ) -> list[Item]:
        """Monitor items in subscriptions of at most `capacity.per_subscription`, created in
        calls of at most `capacity.per_call`. Returns the items the server refused, to be
        polled."""
        cfg = self._config
        session = client.uaclient.session
        handler = _Notifications(self, buffer, loss)
        keepalive_count = self.keepalive_count()
        polled: list[Item] = []
        loss.answered()  # the clock of silence starts now
        for part in chunks(items, capacity.per_subscription):
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=cfg.publishing_interval_ms,
                RequestedMaxKeepAliveCount=keepalive_count,
                # spec: at least 3x keep-alive; here also a minute, so a short stall keeps it
                RequestedLifetimeCount=max(
                    10 * keepalive_count,
                    math.ceil(SESSION_TIMEOUT_MS / cfg.publishing_interval_ms),
                ),
                # One change of every item fits one message; a backlog comes in several.
                MaxNotificationsPerPublish=len(part),
                PublishingEnabled=True,
            )
            try:
                async with asyncio.timeout(cfg.timeout_s):
                    created = await session.create_subscription(params, handler.on_publish)
            except ua.UaStatusCodeError as exc:
                self._refused(len(part), "a subscription", exc)
                polled.extend(part)
                continue
            for call in chunks(part, capacity.per_call):
                polled.extend(await self._monitor(session, created.SubscriptionId, call, buffer))
        return polled

    async def _monitor(
        self, session: UaSession, subscription_id: int, call: Sequence[Item], buffer: SampleBuffer
    ) -> list[Item]:
        """One CreateMonitoredItems call; returns the items to poll instead."""
        try:
            async with asyncio.timeout(self._config.timeout_s):
                results = await session.create_monitored_items(
                    ua.CreateMonitoredItemsParameters(
                        SubscriptionId=subscription_id,
                        ItemsToCreate=[self._monitor_request(i, n) for i, n in call],
                        TimestampsToReturn=ua.TimestampsToReturn.Both,
                    )
                )
        except ua.UaStatusCodeError as exc:
            self._refused(len(call), "monitored items", exc)
            return list(call)
        self._check_sampling(results)
        return await self._sort_refusals(call, results, buffer)

    def _refused(self, count: int, what: str, exc: ua.UaStatusCodeError) -> None:
        _log.warning(
            "%s: server refused %s (%s); polling %d tags every %gs instead",
            self.name,
            what,
            exc,
            count,
            self._config.poll_interval_s,
        )

    async def _choose_sampling(
        self, client: Client, items: list[Item], capacity: Capacity, limits: ServerLimits
    ) -> None:
        """Which tags the default samples by exception; warn once if the sampling asked for
        (of all sessions so far) is more than the server takes."""
        cfg = self._config
        if cfg.sampling_interval_ms is None:
            self._by_exception |= await by_exception(
                client, items, timeout_s=cfg.timeout_s, batch=capacity.per_read
            )
        self._asked_ms.update((index, self._sampling_ms(index)) for index, _ in items)
        warning = sampling_warning(list(self._asked_ms.values()), limits)
        if warning is not None and not self._sampling_warned:
            self._sampling_warned = True  # sessions add their tags: the first sum past it
            _log.warning("%s: %s", self.name, warning)

    def _sampling_ms(self, index: int) -> float:
        """The sampling interval asked for a tag: as configured, else by exception (0) where
        the server supports it, else once per publishing interval."""
        cfg = self._config
        if cfg.sampling_interval_ms is not None:
            return cfg.sampling_interval_ms
        return 0.0 if index in self._by_exception else cfg.publishing_interval_ms

    def _check_sampling(self, results: Sequence[ua.MonitoredItemCreateResult]) -> None:
        """Warn once if the server samples slower than asked: changes faster than twice its
        interval may then be missed (see the rule for sampling_interval_ms in the connector's
        README)."""
        asked = self._config.sampling_interval_ms
        if asked is None:  # the default: by exception, or the publishing interval
            return
        revised = max((r.RevisedSamplingInterval for r in results), default=asked)
        if 0 < asked < revised and not self._slow_sampling_told:
            self._slow_sampling_told = True
            _log.warning(
                "%s: the server samples every %g ms, not every %g ms as asked: a value that "
                "changes more often than every %g ms may lose changes",
                self.name,
                revised,
                asked,
                2 * revised,
            )

    async def _sort_refusals(
        self,
        part: Sequence[Item],
        results: list[ua.MonitoredItemCreateResult],
        buffer: SampleBuffer,
    ) -> list[Item]:
        """Unreadable nodes get one BAD sample; items refused for other reasons
        (too many items, unsupported deadband) fall back to polling."""
        polled: list[Item] = []
        bad: list[Sample] = []
        refusal = ""
        now = time.time_ns()
        for (index, nodeid), result in zip(part, results, strict=True):
            status = result.StatusCode
            if status.is_good():
                continue
            if status.value in _NODE_ERRORS:
                self._note(index, f"{nodeid.to_string()}: {status.name}")
                bad.append(self._marker(index, now))
            else:
                polled.append((index, nodeid))
                refusal = refusal or status.name
        if polled:
            _log.warning(
                "%s: server refused %d monitored items (%s); polling them every %ss instead",
                self.name,
                len(polled),
                refusal,
                self._config.poll_interval_s,
            )
        await buffer.put(bad, flush=True)
        return polled

    def _monitor_request(self, index: int, nodeid: ua.NodeId) -> ua.MonitoredItemCreateRequest:
        parameters = ua.MonitoringParameters(
            ClientHandle=index,
            SamplingInterval=self._sampling_ms(index),
            QueueSize=self._queue_size,
            DiscardOldest=True,
            Filter=deadband_filter(self._config.tags[index].deadband),
        )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=nodeid, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=parameters,
        )

    async def _poll(
        self,
        client: Client,
        items: list[Item],
        buffer: SampleBuffer,
        loss: _Loss,
        capacity: Capacity,
    ) -> None:
        """Read all items with one Read request per batch, every poll interval."""
        cfg = self._config
        requests = [
            (
                [index for index, _ in part],
                ua.ReadParameters(
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    NodesToRead=[
                        ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for _, n in part
                    ],
                ),
            )
            for part in chunks(items, capacity.per_read)
        ]
        session = client.uaclient.session
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                for indexes, params in requests:
                    async with asyncio.timeout(cfg.timeout_s):
                        values = await session.read(params)
                    loss.heard_ns = time.time_ns()
                    others: list[Other] = []
                    pairs = zip(indexes, values, strict=True)
                    await buffer.put(self._samples(decoded(pairs, others), others))
                    await self._put_others(buffer, others)
                self.stats.latency_ms = (loop.time() - started) * 1000
                await buffer.put((), flush=True)
                await asyncio.sleep(max(0.0, cfg.poll_interval_s - (loop.time() - started)))
        except SESSION_FAILURES as exc:
            loss.report(f"poll failed: {type(exc).__name__}: {exc}")

    def _samples(self, values: Iterable[Decoded], others: list[Other]) -> SampleBatch:
        """Samples for decoded values (the tag index first): the hot path of both modes. They go out
        as columns, one run per stretch of equal timestamp and quality (a PLC stamps the
        changes of one scan alike), so no Sample object is made per value. The code of an
        enumeration goes to `others`, to be stored with its name."""
        keys = self._keys
        reasons = self._reasons
        enums = self._enums
        seen = self._latest.seen
        now = time.monotonic()
        batch = SampleBatch()
        run_keys: list[SeriesKey] = []
        run_values: list[float] = []
        run_ts, run_quality = 0, Quality.GOOD
        for index, value, quality, ts, reason in values:
            if enums and index in enums and reason is None and value == value:  # not NaN
                others.append((index, quality, ts, int(value)))
                continue
            ts = seen(index, value, quality, ts, now)
            if ts != run_ts or quality is not run_quality:
                if run_keys:
                    batch.add(tuple(run_keys), run_values, run_quality, run_ts)
                run_keys, run_values, run_ts, run_quality = [], [], ts, quality
            run_keys.append(keys[index])
            run_values.append(value)
            if reason is not None or index in reasons:
                self._note(index, reason)
        if run_keys:
            batch.add(tuple(run_keys), run_values, run_quality, run_ts)
        return batch

    async def _put_others(self, buffer: SampleBuffer, others: list[Other]) -> None:
        """Readings of values that are not one number (docs/data-model.md, "Values"): texts,
        arrays (one series per element) and enumerations (code and name); a type the data model
        has no place for marks its tag BAD, logged once."""
        if not others:
            return
        points: list[Point] = []
        bad: list[Sample] = []
        for index, quality, ts, raw in others:
            ts = self._latest.not_numeric(index, quality, ts)
            try:
                found = readings(raw, self._enums.get(index))
            except NotStored as exc:
                self._note(index, str(exc))
                bad.append(self._series[index].bad(ts))
                continue
            site, line, machine, signal = self._keys[index]
            points += [
                telemetry_point(
                    (site, line, machine, signal + suffix), ts, quality, value=value, text=text
                )
                for suffix, value, text in found
            ]
            if index in self._reasons:
                self._note(index, None)
        buffer.put_points(points)
        await buffer.put(bad)

    def keepalive_count(self) -> int:
        """Publishing intervals per keep-alive: three keep-alives per stale_after_s, so that a
        silent server is noticed in time."""
        keepalive_s = self.stale_after_s() / 3
        return max(1, math.floor(keepalive_s * 1000 / self._config.publishing_interval_ms))

    def stale_after_s(self) -> float:
        """How long a server may stay silent before the session counts as lost."""
        cfg = self._config
        if cfg.stale_after_s is not None:
            return cfg.stale_after_s
        if cfg.mode == "subscribe":
            return 2 * cfg.publishing_interval_ms / 1000 + STALE_MARGIN_S
        return cfg.timeout_s

    async def _watch(self, client: Client, loss: _Loss) -> None:
        """Watch the session until it breaks, then raise with why.

        asyncua's supervisor reports a dropped socket at once (connection_lost_callback). A
        silent server is caught two ways: subscriptions must answer (data or keep-alive) within
        stale_after_s, and a probe read every timeout_s must answer within stale_after_s; the
        probe's round trip is the connector's latency.
        """
        timeout_s = self._config.timeout_s
        stale_s = self.stale_after_s()
        loop = asyncio.get_running_loop()
        next_probe = loop.time()
        while not await _set_within(loss.event, min(timeout_s, stale_s / 4)):
            if loss.last_answer is not None and loop.time() - loss.last_answer > stale_s:
                raise ConnectionError(
                    f"no publish answer for {stale_s:g} s (server frozen or network stalled)"
                )
            if loop.time() < next_probe:
                continue
            started = time.perf_counter()
            probe_s = min(timeout_s, stale_s)
            try:
                async with asyncio.timeout(probe_s):
                    (value,) = await client.uaclient.read_attributes(
                        [_SERVER_TIME], ua.AttributeIds.Value
                    )
            except TimeoutError:
                raise ConnectionError(
                    f"no answer to a read for {probe_s:g} s (server frozen or network stalled)"
                ) from None
            checked_value(value)  # raises unless Good
            self.stats.latency_ms = (time.perf_counter() - started) * 1000
            next_probe = loop.time() + timeout_s
        raise ConnectionError(loss.reason)

    def _connected(self, backoff: Backoff, slot: _Slot) -> None:
        if slot.was_connected:
            self.stats.reconnects += 1
        slot.was_connected = slot.connected = True
        slot.marked_bad = False
        self.stats.connected = all(other.connected for other in self._slots)
        for index in slot.indexes:  # its tags are BAD now only for a reason of their own
            reason = self._reasons.get(index)
            if reason is None:
                self.stats.bad_tags.pop(self._tag_name(index), None)
            else:
                self.stats.bad_tags[self._tag_name(index)] = reason
        backoff.reset()
        cfg = self._config
        _log.info(
            "%s: connected to %s (%s)%s",
            self.name,
            self.endpoint,
            describe_session(cfg.security, cfg.auth),
            f", session {slot.number + 1} of {len(self._slots)}" if len(self._slots) > 1 else "",
        )

    def _disconnected(self, slot: _Slot) -> None:
        slot.connected = self.stats.connected = False

    def _failed(self, reason: str, wait_s: float | None = None) -> None:
        """Count every failed session; log a reason once, not on every retry. A refused
        certificate or login is retried only after `wait_s`, and said so on every retry."""
        self.stats.errors += 1
        if wait_s is not None:
            self.stats.last_error = reason
            _log.warning(
                "%s: %s; not retrying for %g s (retrying sooner could lock the account on "
                "the PLC; reconnect.auth_retry_s sets this)",
                self.name,
                reason,
                wait_s,
            )
            return
        level = logging.DEBUG if reason == self.stats.last_error else logging.WARNING
        self.stats.last_error = reason
        _log.log(level, "%s: %s; reconnecting", self.name, reason)

    async def _mark_all_bad(self, buffer: SampleBuffer, slot: _Slot) -> None:
        """Once per outage: every tag of the session BAD, so dashboards show the loss instead
        of stale values."""
        if slot.marked_bad:
            return
        slot.marked_bad = True
        now = time.time_ns()
        why = self.stats.last_error
        for index in slot.indexes:
            self.stats.bad_tags[self._tag_name(index)] = why
        await buffer.put([self._marker(i, now) for i in slot.indexes], flush=True)

    def _tag_name(self, index: int) -> str:
        series = self._series[index]
        return f"{series.machine}/{series.signal}"

    def _marker(self, index: int, ts_ns: int) -> Sample:
        """A BAD sample stamped with local time; the tag's next good value is stamped so too."""
        marker = self._series[index].bad(ts_ns)
        self._latest.marked(index, marker)
        return marker

    def _note(self, index: int, reason: str | None, *, quiet: bool = False) -> None:
        """Count and log a tag's BAD reason once per tag and reason, not on every notification
        (`quiet`: the caller says it for many tags at once)."""
        if reason is None:
            del self._reasons[index]
            self.stats.bad_tags.pop(self._tag_name(index), None)
            _log.info("%s: %s recovered", self.name, self._series[index].signal)
        elif self._reasons.get(index) != reason:
            self._reasons[index] = reason
            self.stats.bad_tags[self._tag_name(index)] = reason
            if quiet or (index, reason) in self._told:  # once per tag and cause
                return
            self._told.add((index, reason))
            self.stats.errors += 1
            self.stats.last_error = reason
            series = self._series[index]
            _log.warning("%s: %s/%s is BAD: %s", self.name, series.machine, series.signal, reason)


class _Notifications:
    """The subscriptions' publish callback: one call per PublishResponse, not per item."""

    def __init__(self, owner: OpcUaInput, buffer: SampleBuffer, loss: _Loss) -> None:
        self._owner = owner
        self._buffer = buffer
        self._loss = loss

    async def on_publish(self, result: ua.PublishResult) -> None:
        self._loss.answered()
        data = result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        for notification in data:
            others: list[Other] = []
            if isinstance(notification, Changes):  # the fast path (publish.py)
                changes = notification.decoded(time.time_ns())
                await self._buffer.put(self._owner._samples(changes, others))
            elif isinstance(notification, ua.DataChangeNotification):
                pairs = ((item.ClientHandle, item.Value) for item in notification.MonitoredItems)
                await self._buffer.put(self._owner._samples(decoded(pairs, others), others))
            elif isinstance(notification, ua.StatusChangeNotification):
                self._loss.report(f"subscription ended: {notification.Status.name}")
            await self._owner._put_others(self._buffer, others)


def deadband_filter(deadband: Deadband) -> ua.DataChangeFilter | None:
    """The server-side filter for a tag's deadband (None: report every change)."""
    if deadband.type == "none":
        return None
    return ua.DataChangeFilter(
        Trigger=ua.DataChangeTrigger.StatusValue,
        DeadbandType=_DEADBAND_TYPES[deadband.type],
        DeadbandValue=deadband.value,
    )


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it is set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
