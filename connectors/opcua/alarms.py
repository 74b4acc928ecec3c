"""OPC UA alarms and conditions into the `events` measurement (kind `alarm`).

The connector's first session subscribes to the events of the configured notifiers (the Server
object by default) with a where-clause that lets through AlarmConditionType and its subtypes
(LimitAlarmType, OffNormalAlarmType, ...), and calls ConditionRefresh after every (re)connect:
the server then re-sends the state of every retained condition, so that the active set is right
after any outage. Each event notification becomes one `events` point, stamped with the event's
Time; a refresh re-sends the same point (same series and time), which overwrites, never doubles.
The fields are selected by browse path, so any server's alarm types give the same record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Client, ua
from asyncua.common.events import where_clause_from_evtype
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.opcua.nodeid import parse_node
from connectors.opcua.resolve import resolve_all
from core.inputs import EmitPoints
from core.sample import Point
from core.schema import EVENTS, EventKind
from core.severity import opcua_severity_level

_log = logging.getLogger(__name__)

SERVER_OBJECT = "i=2253"
_BASE = ua.NodeId(ua.Int32(ua.ObjectIds.BaseEventType))
_CONDITION = ua.NodeId(ua.Int32(ua.ObjectIds.ConditionType))
_ACKNOWLEDGEABLE = ua.NodeId(ua.Int32(ua.ObjectIds.AcknowledgeableConditionType))
_ALARM = ua.NodeId(ua.Int32(ua.ObjectIds.AlarmConditionType))
_REFRESH = ua.NodeId(ua.Int32(ua.ObjectIds.ConditionType_ConditionRefresh))

# (name in the record, defining type, browse path) of every selected event field, in order.
_FIELDS: tuple[tuple[str, ua.NodeId, tuple[str, ...]], ...] = (
    ("event_id", _BASE, ("EventId",)),
    ("source", _BASE, ("SourceName",)),
    ("time", _BASE, ("Time",)),
    ("receive_time", _BASE, ("ReceiveTime",)),
    ("message", _BASE, ("Message",)),
    ("severity", _BASE, ("Severity",)),
    ("condition", _CONDITION, ("ConditionName",)),
    ("retain", _CONDITION, ("Retain",)),
    ("acked", _ACKNOWLEDGEABLE, ("AckedState", "Id")),
    ("confirmed", _ACKNOWLEDGEABLE, ("ConfirmedState", "Id")),
    ("active", _ALARM, ("ActiveState", "Id")),
    ("comment", _CONDITION, ("Comment",)),
)
_NAMES = [name for name, _, _ in _FIELDS] + ["condition_id"]


class AlarmsConfig(BaseModel):
    """The `alarms:` section of a `type: opcua` entry (README: Alarms and conditions)."""

    model_config = ConfigDict(extra="forbid")

    # the objects whose events are subscribed to (node ids or browse paths): the Server
    # object, or areas of the server
    notifiers: list[str] = Field(default_factory=lambda: [SERVER_OBJECT], min_length=1)
    # SourceName -> machine tag; a source not listed is stored under its own name
    machines: dict[str, str] = Field(default_factory=dict)
    # only the alarms of these SourceNames are stored (None: every source), e.g. where another
    # connector brings a device's alarms from the device itself
    sources: list[str] | None = None
    # `shopfloor ack` may acknowledge this server's conditions (off: refused)
    acknowledge: bool = False

    @field_validator("notifiers")
    @classmethod
    def _notifiers_parse(cls, notifiers: list[str]) -> list[str]:
        for notifier in notifiers:
            parse_node(notifier)
        return notifiers


def event_filter(where: ua.ContentFilter) -> ua.EventFilter:
    """The select clauses of `_FIELDS` (and the ConditionId) with the given where-clause."""
    selects = [
        ua.SimpleAttributeOperand(
            TypeDefinitionId=type_id,
            BrowsePath=[ua.QualifiedName(part, 0) for part in path],
            AttributeId=ua.AttributeIds.Value,
        )
        for _, type_id, path in _FIELDS
    ]
    # ConditionId: the NodeId attribute of the ConditionType itself, with an empty path (Part 9)
    selects.append(
        ua.SimpleAttributeOperand(TypeDefinitionId=_CONDITION, AttributeId=ua.AttributeIds.NodeId)
    )
    return ua.EventFilter(SelectClauses=selects, WhereClause=where)


class AlarmEvents:
    """Turns event notifications into `events` points for one connector."""

    def __init__(self, config: AlarmsConfig, *, site: str, line: str) -> None:
        self.config = config
        self._tags = {"site": site, "line": line, "kind": EventKind.ALARM.value}
        self._left_out: set[str] = set()  # sources not in `sources`, logged once each
        self.emit: EmitPoints | None = None  # the pipeline's, set before the first connect

    async def subscribe(
        self,
        client: Client,
        *,
        publishing_interval_ms: float,
        keepalive_count: int,
        timeout_s: float,
        on_publish: Callable[[], None],
    ) -> None:
        """Subscribe to the notifiers' alarm events on `client`'s session, then ask for a
        ConditionRefresh. Raises what the session raises (the caller reconnects)."""
        session = client.uaclient.session
        notifiers = self.config.notifiers
        resolved = await resolve_all(
            client, [parse_node(n) for n in notifiers], timeout_s=timeout_s, batch=100
        )
        async with asyncio.timeout(timeout_s):
            where = await where_clause_from_evtype([client.get_node(_ALARM)])

        async def callback(result: ua.PublishResult) -> None:
            on_publish()
            await self.on_publish(result)

        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=publishing_interval_ms,
            RequestedMaxKeepAliveCount=keepalive_count,  # the session's liveness, as the tags'
            RequestedLifetimeCount=10 * keepalive_count,
            PublishingEnabled=True,
        )
        async with asyncio.timeout(timeout_s):
            created = await session.create_subscription(params, callback)
            results = await session.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=created.SubscriptionId,
                    ItemsToCreate=[
                        self._request(number, node, where)
                        for number, node in enumerate(resolved)
                        if isinstance(node, ua.NodeId)
                    ],
                    TimestampsToReturn=ua.TimestampsToReturn.Neither,
                )
            )
        answers = iter(results)
        for notifier, node in zip(notifiers, resolved, strict=True):
            problem = node if isinstance(node, str) else _refusal(next(answers))
            if problem:
                _log.warning(
                    "alarms: no events from notifier %s (%s); check `alarms.notifiers` (the "
                    "Server object is i=2253)",
                    notifier,
                    problem,
                )
        async with asyncio.timeout(timeout_s):
            await refresh(client, created.SubscriptionId)

    def _request(
        self, number: int, node: ua.NodeId, where: ua.ContentFilter
    ) -> ua.MonitoredItemCreateRequest:
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.EventNotifier),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=number,
                SamplingInterval=0,
                QueueSize=1000,  # a refresh of many conditions arrives at once
                DiscardOldest=False,
                Filter=event_filter(where),
            ),
        )

    async def on_publish(self, result: ua.PublishResult) -> None:
        points = [
            point
            for notification in result.NotificationMessage.NotificationData or ()
            if isinstance(notification, ua.EventNotificationList)
            for event in notification.Events
            if (point := self.point(event.EventFields)) is not None
        ]
        if points and self.emit is not None:
            await self.emit(points)

    def point(self, fields: Sequence[ua.Variant]) -> Point | None:
        """The `events` point of one event's selected fields (None: not an alarm after all)."""
        if len(fields) != len(_NAMES):
            return None
        event = {name: variant.Value for name, variant in zip(_NAMES, fields, strict=True)}
        if event["active"] is None:  # a server that ignores the where-clause
            return None
        source = str(event["source"] or "")
        if not self._wanted(source):
            return None
        severity = int(event["severity"] or 0)
        values: dict[str, float | int | bool | str] = {
            "text": _text(event["message"]),
            "comment": _text(event["comment"]),
            "active": bool(event["active"]),
            "acked": bool(event["acked"]),
            "confirmed": bool(event["confirmed"]),
            "retain": bool(event["retain"]),
            "source": source,
            "condition": str(event["condition"] or ""),
            "condition_id": _node_text(event["condition_id"]),
            "alarm_severity": severity,
            "severity_level": int(opcua_severity_level(severity)),
            "event_id": event["event_id"].hex() if isinstance(event["event_id"], bytes) else "",
        }
        received = _ns(event["receive_time"])
        if received:
            values["receive_time_ns"] = received
        ts = _ns(event["time"]) or received
        if not ts:
            return None
        tags = {**self._tags, "machine": self.config.machines.get(source, source or "server")}
        return Point(EVENTS.name, tags, values, ts)

    def _wanted(self, source: str) -> bool:
        if self.config.sources is None or source in self.config.sources:
            return True
        if source not in self._left_out:
            self._left_out.add(source)
            _log.info("alarms: %r is not in `alarms.sources`: its alarms are not stored", source)
        return False


async def refresh(client: Client, subscription_id: int) -> None:
    """ConditionRefresh: the server re-sends every retained condition to the subscription."""
    (result,) = await client.uaclient.call(
        [
            ua.CallMethodRequest(
                ObjectId=_CONDITION,
                MethodId=_REFRESH,
                InputArguments=[ua.Variant(subscription_id, ua.VariantType.UInt32)],
            )
        ]
    )
    if not result.StatusCode.is_good():
        _log.warning(
            "alarms: the server refused ConditionRefresh (%s): alarms that are active now "
            "show only when they change",
            result.StatusCode.name,
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(value: Any) -> int:
    """ns since the epoch of an OPC UA DateTime (naive ones are UTC); 0 for none."""
    if not isinstance(value, datetime):
        return 0
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1) * 1000


def _refusal(result: ua.MonitoredItemCreateResult) -> str:
    return "" if result.StatusCode.is_good() else str(result.StatusCode.name)


def _text(value: Any) -> str:
    return str(value.Text or "") if isinstance(value, ua.LocalizedText) else ""


def _node_text(value: Any) -> str:
    return value.to_string() if isinstance(value, ua.NodeId) else ""
