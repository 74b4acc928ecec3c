"""`shopfloor probe`: raw registers of a device and every reading of them side by side.

Device manuals are often vague about word order and data type; showing each start address
decoded as every type in every order lets an integrator pick the row that matches the value
on the device's display, then write that type and order into the connectors file.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.exceptions import ModbusException

from connectors.modbus.client import EXCEPTION_MEANINGS, reader_for
from connectors.modbus.codec import REGISTER_WIDTH, DataType, WordOrder, decode
from connectors.modbus.config import Table
from connectors.modbus.transport import ConnectError, Serial, connect, new_client, parse_url

NUMERIC_TYPES = tuple(t for t in DataType if t not in (DataType.BIT, DataType.BOOL))
ORDERS = (WordOrder.ABCD, WordOrder.CDAB, WordOrder.BADC, WordOrder.DCBA)


class ProbeError(Exception):
    """The read failed; the message says why (exception code and meaning, timeout, ...)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One start address read as one type, in each word order."""

    address: int
    dtype: DataType
    values: tuple[int | float, ...]  # in ORDERS order


async def read_block(
    url: str,
    *,
    unit: int,
    table: Table,
    address: int,
    count: int,
    timeout_s: float,
    serial: Serial | None = None,
) -> list[int]:
    """Registers (or bits as 0/1) from one read; ProbeError on any failure."""
    link = parse_url(url)
    client = new_client(link, serial, name="probe")
    try:
        try:
            await connect(client, link, url, timeout_s)
        except ConnectError as exc:
            raise ProbeError(str(exc)) from None
        async with asyncio.timeout(timeout_s):
            response = await reader_for(client, table)(address, count=count, device_id=unit)
    except TimeoutError:
        raise ProbeError(
            f"timeout: no answer from {url} unit {unit} within {timeout_s:g} s"
        ) from None
    except (ModbusException, OSError) as exc:
        raise ProbeError(f"{url}: {exc}") from None
    finally:
        client.close()
    if response.isError():
        code = getattr(response, "exception_code", 0)
        meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
        raise ProbeError(
            f"unit {unit} {table} {address}..{address + count - 1}: "
            f"Modbus exception {code}: {meaning}"
        )
    values = response.bits if table.holds_bits else response.registers
    return [int(v) for v in values[:count]]


def readings(
    registers: Sequence[int], first_address: int, types: Sequence[DataType] = NUMERIC_TYPES
) -> list[Reading]:
    """Every type that fits at every start address, decoded in every word order."""
    out = []
    for offset in range(len(registers)):
        for dtype in types:
            width = REGISTER_WIDTH[dtype]
            words = registers[offset : offset + width]
            if len(words) < width:
                continue
            values = tuple(decode(words, dtype, order) for order in ORDERS)
            out.append(Reading(first_address + offset, dtype, values))
    return out


def format_value(value: int | float) -> str:
    """Integers exactly; floats to 7 significant digits, so garbage looks like garbage."""
    if isinstance(value, float):
        return f"{value:.7g}" if math.isfinite(value) else str(value)
    return str(value)
