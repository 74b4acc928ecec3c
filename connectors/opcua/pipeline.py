"""Several Publish requests outstanding per session, instead of asyncua's one.

asyncua's publish loop sends a Publish request, waits for the response, runs the callback and
only then sends the next request. A server sends a bounded number of notifications per message
(node-opcua: 1,000), so one session then delivers at most that many per round trip, and when
changes come faster the monitored items' queues on the server overflow: those changes are gone.
The standard lets a client keep several requests queued on the server (OPC UA Part 4, 5.13.5),
as Kepware, Ignition and UaExpert do. This pipeline keeps `depth` of them:

- each worker sends a request, waits for its response (bounded in time) and hands the message to
  the subscription's callback; the server answers whichever request it holds first;
- acknowledgements are collected from every message the callback took, and all of them go with
  the next request any worker sends (none is sent before the callback has the data);
- a message whose sequence number skips one (a response lost on the way) makes the pipeline ask
  for the missing ones with Republish, which works while the server still holds them (it does
  until they are acknowledged); one the server no longer has is counted and logged as lost;
- a server that refuses a request with BadTooManyPublishRequests has said how many it takes:
  that worker stops, the others go on.

The asyncua contact lives here only: the pipeline takes the place of the session's
`_publish_loop` (asyncua starts that on the first `create_subscription` and cancels it in
`close_session`), reads the session's `_subscription_callbacks` and sends with `_send_request`;
tests/connectors/opcua/test_opcua_pipeline.py pins that behaviour of the installed asyncua.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

from asyncua import ua
from asyncua.client.ua_session import SessionState, UaSession

from connectors.opcua.publish import decode_publish

_log = logging.getLogger(__name__)

MAX_DEPTH = 20  # requests per session; servers queue ~100 (node-opcua) but few need more
MAX_GAP = 1000  # missing sequence numbers asked for at most in one gap (a wrap or a reset)
_CLOSED = (SessionState.CLOSING, SessionState.CLOSED)


def pipeline_depth(subscriptions: int) -> int:
    """Requests to keep outstanding: two per subscription, so that each always finds one
    waiting on the server while the other travels, and one more for the alarms' or a keep-alive."""
    return max(2, min(MAX_DEPTH, 2 * subscriptions + 1))


@dataclass(slots=True)
class PipelineStats:
    """What the pipeline did, for the log and the tests."""

    republished: int = 0  # messages recovered with Republish after a sequence gap
    lost: int = 0  # messages the server no longer had when asked
    refused: int = 0  # requests the server refused as too many (its limit)


class _Stop(Exception):
    """This worker is to stop."""


class PublishPipeline:
    """The publish loop of one session: `depth` requests outstanding."""

    def __init__(
        self,
        session: UaSession,
        *,
        depth: int,
        timeout_s: float,
        on_loss: Callable[[str], None],
        on_lost_message: Callable[[str], None],
    ) -> None:
        """`on_loss` is told why when the session cannot publish any more; `on_lost_message`
        when a skipped message could not be recovered."""
        self.depth = depth
        self.stats = PipelineStats()
        self._session = session
        self._timeout_s = timeout_s
        self._on_loss = on_loss
        self._on_lost_message = on_lost_message
        self._acks: list[ua.SubscriptionAcknowledgement] = []
        self._last: dict[int, int] = {}  # subscription id -> highest sequence number seen
        self._workers = 0

    def install(self) -> None:
        """Run this pipeline where asyncua would run its own publish loop."""
        self._session._publish_loop = self.run  # type: ignore[method-assign]

    async def run(self) -> None:
        """The workers, until the session closes (asyncua cancels this task then)."""
        async with asyncio.TaskGroup() as group:
            for number in range(self.depth):
                group.create_task(self._worker(), name=f"opcua-publish-{number}")

    async def _worker(self) -> None:
        self._workers += 1
        try:
            while self._session._state not in _CLOSED:
                try:
                    result = await self._publish()
                except _Stop:
                    return
                if result is not None:
                    await self._dispatch(result)
        finally:
            self._workers -= 1

    async def _publish(self) -> ua.PublishResult | None:
        """One request: its result, or None to ask again. Raises _Stop when this worker is
        to stop."""
        acks, self._acks = self._acks, []
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks
        try:
            async with asyncio.timeout(self._timeout_s):
                data = await self._session._send_request(request, timeout=0)
        except TimeoutError:
            self._acks = acks + self._acks  # they may not have arrived: the server drops repeats
            return None
        except ua.UaStatusCodeError as exc:
            self._acks = acks + self._acks
            self._refused(exc)
            return None
        except (ConnectionError, ua.UaError) as exc:
            self._on_loss(f"publish failed: {exc!r}")  # the connector reconnects
            raise _Stop from None
        return decode_publish(data).Parameters

    def _refused(self, exc: ua.UaStatusCodeError) -> None:
        """BadTimeout: ask again; too many requests: one worker fewer; else the session is
        broken (closed, unknown) and the connector is told."""
        if exc.code == ua.StatusCodes.BadTimeout:
            return
        if exc.code == ua.StatusCodes.BadTooManyPublishRequests and self._workers > 1:
            self.stats.refused += 1
            _log.info("the server takes fewer Publish requests: %d outstanding", self._workers - 1)
        elif exc.code != ua.StatusCodes.BadNoSubscription:
            self._on_loss(f"publish refused: {exc}")
        raise _Stop

    async def _dispatch(self, result: ua.PublishResult) -> None:
        """Hand a message to its subscription, acknowledge it, and recover any it skipped."""
        subscription = result.SubscriptionId
        if not subscription:
            return
        message = result.NotificationMessage
        missing = self._missing(
            subscription, message.SequenceNumber, bool(message.NotificationData)
        )
        callback = self._session._subscription_callbacks.get(subscription)
        if callback is None:
            return  # deleted meanwhile: nothing wants it, and the server drops it unacknowledged
        await _call(callback, result)
        if message.NotificationData:
            self._acks.append(ua.SubscriptionAcknowledgement(subscription, message.SequenceNumber))
        for sequence in missing:
            await self._republish(subscription, sequence, callback)

    def _missing(self, subscription: int, sequence: int, data: bool) -> range:
        """The sequence numbers this message shows were skipped. Called as soon as a response
        arrives, before any await, so that responses are seen in the order they came. A
        keep-alive carries the number the next message will have."""
        last = self._last.get(subscription, 0)
        self._last[subscription] = max(last, sequence if data else sequence - 1)
        return range(max(last + 1, sequence - MAX_GAP), sequence)  # the first message is 1

    async def _republish(
        self, subscription: int, sequence: int, callback: Callable[..., object]
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                message = await self._session.republish(subscription, sequence)
        except (ua.UaStatusCodeError, TimeoutError) as exc:
            self.stats.lost += 1
            self._on_lost_message(
                f"publish message {sequence} of subscription {subscription} did not arrive and "
                f"the server no longer has it ({exc!r}): its changes are lost"
            )
            return
        self.stats.republished += 1
        await _call(callback, ua.PublishResult(subscription, NotificationMessage=message))
        self._acks.append(ua.SubscriptionAcknowledgement(subscription, sequence))


async def _call(callback: Callable[..., object], result: ua.PublishResult) -> None:
    """asyncua takes plain and coroutine callbacks; so does the pipeline. A callback that
    fails is a bug of ours: logged with its traceback, and the other messages flow."""
    try:
        outcome = callback(result)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        _log.exception("the callback of subscription %d failed", result.SubscriptionId)
