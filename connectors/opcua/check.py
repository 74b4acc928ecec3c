"""`shopfloor check` for an OPC UA connector: connect as configured, read every tag once.

Uses the connector's own session setup, node resolution and value conversion, so a tag that
passes here is read the same way by the running connector.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

from asyncua import Client, ua

from connectors.check import ConnectorCheck, TagCheck
from connectors.opcua.browse import read_units
from connectors.opcua.client import quiet_asyncua_loggers
from connectors.opcua.config import Config
from connectors.opcua.datavalue import NotStored, Series, quality_of, readings, to_sample
from connectors.opcua.resolve import chunks, resolve_all
from connectors.opcua.security import IMPLICIT_NONE_WARNING
from connectors.opcua.session import SESSION_FAILURES, close_session, explain, open_session
from core.sample import Quality

_log = logging.getLogger(__name__)
_NO_NODE = frozenset({ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid})
_DENIED = frozenset({ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadNotReadable})


async def check(config: Config) -> ConnectorCheck:
    """Every tag of `config` read once; a connection problem becomes every tag's problem."""
    quiet_asyncua_loggers()
    notes = [IMPLICIT_NONE_WARNING] if config.security is None else []
    try:
        client, setup_notes = await open_session(
            config.endpoint, config.security, config.auth, timeout_s=config.timeout_s
        )
    except SESSION_FAILURES as exc:
        return _all_failed(config, notes, f"cannot connect: {_why(exc, config)}")
    try:
        tags = await _read_once(client, config)
    except SESSION_FAILURES as exc:
        return _all_failed(config, notes, _why(exc, config))
    finally:
        await close_session(client, config.timeout_s)
    return ConnectorCheck(config.name, config.endpoint, tags, notes + setup_notes)


def _why(exc: BaseException, config: Config) -> str:
    return explain(exc, timeout_s=config.timeout_s, auth=config.auth)


def _all_failed(config: Config, notes: list[str], problem: str) -> ConnectorCheck:
    tags = [TagCheck(t.machine, t.signal, t.node, problem=problem) for t in config.tags]
    return ConnectorCheck(config.name, config.endpoint, tags, notes)


async def _read_once(client: Client, config: Config) -> list[TagCheck]:
    batch, timeout_s = config.max_items_per_subscription, config.timeout_s
    resolved = await resolve_all(
        client, [t.address() for t in config.tags], timeout_s=timeout_s, batch=batch
    )
    nodes = [target for target in resolved if isinstance(target, ua.NodeId)]
    values: list[ua.DataValue] = []
    for part in chunks(nodes, batch):
        async with asyncio.timeout(timeout_s):
            values += await client.uaclient.read_attributes(list(part), ua.AttributeIds.Value)
    units = iter(await read_units(client, nodes, timeout_s=timeout_s))
    read = iter(values)
    results = []
    for tag, target in zip(config.tags, resolved, strict=True):
        if isinstance(target, str):
            results.append(
                TagCheck(tag.machine, tag.signal, tag.node, problem=f"bad node id: {target}")
            )
            continue
        dv, unit = next(read), next(units)
        results.append(_outcome(tag.machine, tag.signal, tag.node, dv, unit))
    return results


def _outcome(machine: str, signal: str, node: str, dv: ua.DataValue, unit: str) -> TagCheck:
    status = dv.StatusCode
    if status is not None and status.value in _NO_NODE:
        problem = f"bad node id: the server has no node {node} ({status.name})"
        return TagCheck(machine, signal, node, problem=problem)
    if status is not None and status.value in _DENIED:
        problem = f"access denied ({status.name}): this login may not read the node"
        return TagCheck(machine, signal, node, problem=problem)
    raw = None if dv.Value is None else dv.Value.Value
    if (
        raw is not None
        and not isinstance(raw, int | float)
        and quality_of(status) is not Quality.BAD
    ):
        return _other(TagCheck(machine, signal, node, unit=unit), raw)
    sample, reason = to_sample(Series("", "", machine, signal), dv)
    if reason is not None:
        return TagCheck(machine, signal, node, unit=unit, problem=reason)
    return TagCheck(machine, signal, node, value=sample.value, unit=unit)


def _other(tag: TagCheck, raw: object) -> TagCheck:
    """A value that is not one number, as the connector stores it (a text, an array's
    elements), or the reason it does not."""
    try:
        found = readings(raw)
    except NotStored as exc:
        return dataclasses.replace(tag, problem=str(exc))
    shown = ", ".join(json.dumps(t) if t is not None else repr(v) for _, v, t in found)
    if len(found) > 1:
        shown = f"{len(found)} elements: {shown}"
    return dataclasses.replace(tag, text=shown if len(shown) <= 60 else shown[:57] + "...")
