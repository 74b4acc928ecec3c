"""`shopfloor check` for a Modbus connector: connect, read every tag once, say what went wrong.

Each configured alarm is checked as a tag of its own (`alarm <condition>`): its register's word,
or its bit, and whether that makes it active.

A read the device refuses is retried tag by tag, so that each exception code lands on the tag
that causes it rather than on all its neighbours. Reads go through the connector's own session
(the pipelined client for Modbus TCP), so a device that turns the connection away, or answers
with a malformed frame, is reported as such, as the connector would see it.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from connectors.check import ConnectorCheck, TagCheck
from connectors.modbus.client import EXCEPTION_MEANINGS, decoder_for
from connectors.modbus.codec import DataType
from connectors.modbus.config import Alarm, Config, Device, Tag
from connectors.modbus.plan import PlannedTag, ReadRequest, plan_device
from connectors.modbus.transport import ConnectError, ReadFailed, Session, new_session, read_once
from core.units import unit_of


async def check(config: Config) -> ConnectorCheck:
    """Every tag of `config` read once, in the connector's own request plan."""
    try:
        session = new_session(
            config.link,
            config.serial,
            config.url,
            name=config.name,
            close_after_answer=config.close_after_answer,
        )
    except ValueError as exc:
        return _all_failed(config, str(exc))
    try:
        try:
            await session.open(config.timeout_s)
        except ConnectError as exc:
            return _all_failed(config, str(exc))
        tags: list[TagCheck] = []
        for device in config.devices:
            tags += await _check_device(session, device, config.device_timeout(device))
        return ConnectorCheck(config.name, config.url, tags, [])
    finally:
        session.close()


def _all_failed(config: Config, problem: str) -> ConnectorCheck:
    tags = [
        TagCheck(device.machine, tag.signal, _where(device.unit, tag), problem=problem)
        for device in config.devices
        for tag in _with_alarms(device)[0].tags
    ]
    return ConnectorCheck(config.name, config.url, tags, [])


def _where(unit: int, tag: Tag) -> str:
    return f"unit {unit} {tag.table} {tag.address}"


async def _check_device(session: Session, device: Device, timeout_s: float) -> list[TagCheck]:
    device, alarms = _with_alarms(device)
    results: list[TagCheck] = []
    for request in plan_device(device):
        try:
            results += await _check_request(session, device, request, timeout_s)
        except ReadFailed as exc:
            results += [_tag(device, p, problem=str(exc)) for p in request.tags]
            if not session.pipelined:  # a late RTU answer must not pass for the next
                await _reconnect(session, timeout_s)
    return [_alarm_state(result, alarms.get(result.signal)) for result in results]


def _with_alarms(device: Device) -> tuple[Device, dict[str, Alarm]]:
    """The device with each alarm as a tag named `alarm <condition>` (a register alarm reads
    its whole word), and the alarms by those names."""
    alarms = {f"alarm {alarm.condition}": alarm for alarm in device.alarms}
    tags = [
        Tag(
            signal=name,
            table=alarm.table,
            address=alarm.address,
            type=None if alarm.table.holds_bits else DataType.UINT16,
        )
        for name, alarm in alarms.items()
    ]
    return device.model_copy(update={"alarms": [], "tags": [*device.tags, *tags]}), alarms


def _alarm_state(result: TagCheck, alarm: Alarm | None) -> TagCheck:
    """An alarm's check says whether the value read makes it active."""
    if alarm is None or result.value is None:
        return result
    return replace(result, text="active" if alarm.active(int(result.value)) else "not active")


async def _reconnect(session: Session, timeout_s: float) -> None:
    """A fresh connection; if it fails, the next reads say so themselves."""
    session.close()
    with contextlib.suppress(ConnectError):
        await session.open(timeout_s)


async def _check_request(
    session: Session, device: Device, request: ReadRequest, timeout_s: float
) -> list[TagCheck]:
    function = request.table.function_code
    reply = await read_once(
        session, function, request.unit, request.address, request.count, timeout_s
    )
    if isinstance(reply, str):
        return [_tag(device, p, problem=reply) for p in request.tags]
    if reply.exception_code:
        if len(request.tags) > 1:
            results = []
            for planned in request.tags:
                tag = planned.tag
                single = ReadRequest(
                    request.unit, tag.table, tag.address, tag.width, (PlannedTag(tag, 0),)
                )
                results += await _check_request(session, device, single, timeout_s)
            return results
        problem = exception_problem(reply.exception_code)
        return [_tag(device, request.tags[0], problem=problem)]
    decoder = decoder_for(request)
    if len(reply.data) < decoder.wire_size:
        got = len(reply.data) * 8 if request.table.holds_bits else len(reply.data) // 2
        problem = f"short response: {min(got, request.count)} of {request.count}"
        return [_tag(device, p, problem=problem) for p in request.tags]
    # The block decoder may hand back a numpy array (the hot path's vector): show plain numbers.
    decoded = [float(v) for v in decoder.decode_wire(reply.data[: decoder.wire_size])]
    return [_tag(device, p, value=v) for p, v in zip(request.tags, decoded, strict=True)]


def exception_problem(code: int) -> str:
    """A Modbus exception code and what it means."""
    return f"Modbus exception {code}: {EXCEPTION_MEANINGS.get(code, 'unknown exception code')}"


def _tag(
    device: Device, planned: PlannedTag, *, value: float | None = None, problem: str = ""
) -> TagCheck:
    tag = planned.tag
    return TagCheck(
        device.machine,
        tag.signal,
        _where(device.unit, tag),
        value=value,
        unit=unit_of(tag.signal),
        problem=problem,
    )
