"""`shopfloor check` for a Modbus connector: connect, read every tag once, say what went wrong.

A read the device refuses is retried tag by tag, so that each exception code lands on the tag
that causes it rather than on all its neighbours.
"""

from __future__ import annotations

import asyncio

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from connectors.check import ConnectorCheck, TagCheck
from connectors.modbus.client import EXCEPTION_MEANINGS, decoder_for, reader_for
from connectors.modbus.config import Config, Device, Tag
from connectors.modbus.plan import PlannedTag, ReadRequest, plan_device
from connectors.modbus.transport import ConnectError, connect, new_client
from core.units import unit_of


class _Unreachable(Exception):
    """The endpoint or device did not answer; every remaining tag gets this reason."""


async def check(config: Config) -> ConnectorCheck:
    """Every tag of `config` read once, in the connector's own request plan."""
    try:
        client = new_client(config.link, config.serial, name=config.name)
    except ValueError as exc:
        return _all_failed(config, str(exc))
    try:
        try:
            await connect(client, config.link, config.url, config.timeout_s)
        except ConnectError as exc:
            return _all_failed(config, str(exc))
        tags: list[TagCheck] = []
        for device in config.devices:
            tags += await _check_device(client, device, config.device_timeout(device))
        return ConnectorCheck(config.name, config.url, tags, [])
    finally:
        client.close()


def _all_failed(config: Config, problem: str) -> ConnectorCheck:
    tags = [
        TagCheck(device.machine, tag.signal, _where(device.unit, tag), problem=problem)
        for device in config.devices
        for tag in device.tags
    ]
    return ConnectorCheck(config.name, config.url, tags, [])


def _where(unit: int, tag: Tag) -> str:
    return f"unit {unit} {tag.table} {tag.address}"


async def _check_device(
    client: ModbusBaseClient, device: Device, timeout_s: float
) -> list[TagCheck]:
    results: list[TagCheck] = []
    for request in plan_device(device):
        try:
            results += await _check_request(client, device, request, timeout_s)
        except _Unreachable as exc:
            results += [_tag(device, p, problem=str(exc)) for p in request.tags]
            await _reconnect(client, timeout_s)  # a late answer must not pass for the next
    return results


async def _reconnect(client: ModbusBaseClient, timeout_s: float) -> None:
    """A fresh connection; if it fails, the next reads say so themselves."""
    client.close()
    try:
        async with asyncio.timeout(timeout_s):
            await client.connect()
    except (TimeoutError, OSError):
        pass


async def _check_request(
    client: ModbusBaseClient, device: Device, request: ReadRequest, timeout_s: float
) -> list[TagCheck]:
    response = await _read(client, request, timeout_s)
    if response.isError():
        if len(request.tags) > 1:
            results = []
            for planned in request.tags:
                tag = planned.tag
                single = ReadRequest(
                    request.unit, tag.table, tag.address, tag.width, (PlannedTag(tag, 0),)
                )
                results += await _check_request(client, device, single, timeout_s)
            return results
        code = getattr(response, "exception_code", 0)
        meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
        return [_tag(device, request.tags[0], problem=f"Modbus exception {code}: {meaning}")]
    values = response.bits if request.table.holds_bits else response.registers
    if len(values) < request.count:
        problem = f"short response: {len(values)} of {request.count}"
        return [_tag(device, p, problem=problem) for p in request.tags]
    # The block decoder may hand back a numpy array (the hot path's vector): show plain numbers.
    decoded = [float(v) for v in decoder_for(request).decode(values[: request.count])]
    return [_tag(device, p, value=v) for p, v in zip(request.tags, decoded, strict=True)]


async def _read(client: ModbusBaseClient, request: ReadRequest, timeout_s: float) -> ModbusPDU:
    read = reader_for(client, request.table)
    try:
        async with asyncio.timeout(timeout_s):
            return await read(request.address, count=request.count, device_id=request.unit)
    except TimeoutError:
        raise _Unreachable(
            f"timeout: unit {request.unit} did not answer within {timeout_s:g} s"
        ) from None
    except (ModbusException, OSError) as exc:
        raise _Unreachable(f"connection failed: {exc}") from None


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
