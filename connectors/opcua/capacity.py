"""How many monitored items go in one call, one subscription and one session.

A server announces its limits in Server_ServerCapabilities (OPC UA Part 5): a request past one
is refused whole (BadTooManyOperations, BadTooManySubscriptions), so the connector reads them at
each connect and stays within them. 0 means no limit; a server that announces nothing (or whose
values cannot be read) gets the safe defaults below, which small PLCs accept. Our own bounds come
on top: `max_items_per_subscription` and `max_items_per_session` (more items go to more
sessions, each with its own publish pipeline and its own unit of failure).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import Client, ua

_LIMIT_NODES = (
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    ua.ObjectIds.Server_ServerCapabilities_MaxSubscriptionsPerSession,
    ua.ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription,
    ua.ObjectIds.Server_ServerCapabilities_MaxSessions,
    ua.ObjectIds.Server_ServerCapabilities_MinSupportedSampleRate,
)
# When the server does not say: what small PLCs accept (an S7-1200 takes 100 per call).
DEFAULT_PER_CALL = 100
DEFAULT_PER_READ = 500
DEFAULT_SUBSCRIPTIONS_PER_SESSION = 10


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The limits a server announced; None where it announced none (0, absent or unreadable)."""

    monitored_items_per_call: int | None = None
    nodes_per_read: int | None = None
    nodes_per_translate: int | None = None
    subscriptions_per_session: int | None = None
    monitored_items_per_subscription: int | None = None
    sessions: int | None = None
    min_sampling_ms: float | None = None  # MinSupportedSampleRate: the fastest it samples


async def read_limits(client: Client, timeout_s: float) -> ServerLimits:
    """The server's limits, in one Read; a server that refuses the Read announces none."""
    nodes = [ua.NodeId(ua.Int32(identifier)) for identifier in _LIMIT_NODES]
    try:
        async with asyncio.timeout(timeout_s):
            values = await client.uaclient.read_attributes(nodes, ua.AttributeIds.Value)
    except ua.UaStatusCodeError:
        return ServerLimits()
    per_call, per_read, per_translate, subscriptions, per_subscription, sessions, rate = (
        _limit(value) for value in values
    )
    return ServerLimits(
        monitored_items_per_call=_count(per_call),
        nodes_per_read=_count(per_read),
        nodes_per_translate=_count(per_translate),
        subscriptions_per_session=_count(subscriptions),
        monitored_items_per_subscription=_count(per_subscription),
        sessions=_count(sessions),
        min_sampling_ms=rate,
    )


def _count(limit: float | None) -> int | None:
    return None if limit is None else int(limit)


def _limit(value: ua.DataValue) -> float | None:
    if value.StatusCode is not None and not value.StatusCode.is_good():
        return None
    raw = None if value.Value is None else value.Value.Value
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        return None
    return raw


@dataclass(frozen=True, slots=True)
class Capacity:
    """Chunk sizes for one session's requests, within the server's limits and ours."""

    per_call: int
    per_read: int
    per_translate: int
    per_subscription: int
    subscriptions: int  # per session

    @classmethod
    def of(cls, limits: ServerLimits, *, max_per_subscription: int) -> Capacity:
        per_subscription = _least(max_per_subscription, limits.monitored_items_per_subscription)
        per_read = limits.nodes_per_read or DEFAULT_PER_READ
        return cls(
            per_call=min(limits.monitored_items_per_call or DEFAULT_PER_CALL, per_subscription),
            per_read=per_read,
            per_translate=limits.nodes_per_translate or per_read,
            per_subscription=per_subscription,
            subscriptions=limits.subscriptions_per_session or DEFAULT_SUBSCRIPTIONS_PER_SESSION,
        )

    def per_session(self, max_per_session: int) -> int:
        """Items one session can monitor: our bound, or what its subscriptions can hold."""
        return min(max_per_session, self.subscriptions * self.per_subscription)


def _least(ours: int, server: int | None) -> int:
    return ours if server is None else min(ours, server)


def sessions_for(items: int, per_session: int, max_sessions: int | None) -> int:
    """How many sessions carry `items`: enough for all, but no more than the server allows
    (items that do not fit then are refused by the server and polled)."""
    wanted = max(1, math.ceil(items / per_session))
    return wanted if max_sessions is None else max(1, min(wanted, max_sessions))


def shares(indexes: Sequence[int], sessions: int) -> list[list[int]]:
    """`indexes` in `sessions` contiguous shares as even as possible."""
    size, extra = divmod(len(indexes), sessions)
    out: list[list[int]] = []
    start = 0
    for number in range(sessions):
        end = start + size + (number < extra)
        out.append(list(indexes[start:end]))
        start = end
    return out
