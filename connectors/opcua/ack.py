"""Acknowledging a PLC alarm (Part 9 Acknowledge), guarded by the connectors file.

Acknowledging writes to the PLC, so it is off unless the connector's entry says
`alarms: {acknowledge: true}`; `shopfloor ack` is refused otherwise, before any connection.
"""

from __future__ import annotations

import asyncio
import logging

from asyncua import Client, ua

from connectors.opcua.client import quiet_asyncua_loggers
from connectors.opcua.config import Config
from connectors.opcua.nodeid import NodeRef, parse_node_id
from connectors.opcua.resolve import resolve_all
from connectors.opcua.session import SESSION_FAILURES, close_session, explain, open_session

_log = logging.getLogger(__name__)
_ACKNOWLEDGE = ua.NodeId(ua.Int32(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge))


class AckError(Exception):
    """The acknowledgement was refused (by the config or by the PLC); the message says why."""


async def acknowledge(config: Config, condition_id: str, event_id: str, comment: str) -> None:
    """Acknowledge the condition's state `event_id` (hex, as stored in `events`) with `comment`."""
    if config.alarms is None or not config.alarms.acknowledge:
        raise AckError(
            f"connector {config.name!r} does not allow acknowledging alarms; set "
            "`alarms: {acknowledge: true}` in its entry of the connectors file to allow it"
        )
    try:
        event = bytes.fromhex(event_id)
    except ValueError:
        raise AckError(
            f"event id {event_id!r} is not hex; copy `event_id` from the alarm's event"
        ) from None
    address = parse_node_id(condition_id)  # ValueError: a message with the fix
    quiet_asyncua_loggers()
    try:
        client, _ = await open_session(
            config.endpoint, config.security, config.auth, timeout_s=config.timeout_s
        )
    except SESSION_FAILURES as exc:
        raise AckError(f"cannot connect: {_why(exc, config)}") from None
    try:
        status = await _call(client, config, address, event, comment)
    except SESSION_FAILURES as exc:
        raise AckError(_why(exc, config)) from None
    finally:
        await close_session(client, config.timeout_s)
    if not status.is_good():
        raise AckError(f"the PLC refused the acknowledgement of {condition_id}: {status.name}")


async def _call(
    client: Client, config: Config, address: NodeRef, event: bytes, comment: str
) -> ua.StatusCode:
    (condition,) = await resolve_all(client, [address], timeout_s=config.timeout_s, batch=1)
    if isinstance(condition, str):
        raise AckError(f"condition: {condition}")
    request = ua.CallMethodRequest(
        ObjectId=condition,
        MethodId=_ACKNOWLEDGE,
        InputArguments=[
            ua.Variant(event, ua.VariantType.ByteString),
            ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText),
        ],
    )
    async with asyncio.timeout(config.timeout_s):
        (result,) = await client.uaclient.call([request])
    return result.StatusCode


def _why(exc: BaseException, config: Config) -> str:
    return explain(exc, timeout_s=config.timeout_s, auth=config.auth)
