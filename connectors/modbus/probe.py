"""`shopfloor probe`: raw registers of a device and every reading of them side by side.

Device manuals are often vague about word order and data type; showing each start address
decoded as every type in every order lets an integrator pick the row that matches the value
on the device's display, then write that type and order into the connectors file.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.modbus.client import EXCEPTION_MEANINGS
from connectors.modbus.codec import REGISTER_WIDTH, DataType, WordOrder, decode
from connectors.modbus.config import Table
from connectors.modbus.transport import (
    ConnectError,
    ReadFailed,
    Serial,
    new_session,
    parse_url,
    read_once,
)

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
    session = new_session(parse_url(url), serial, url, name="probe")
    try:
        await session.open(timeout_s)
        reply = await read_once(session, table.function_code, unit, address, count, timeout_s)
    except (ConnectError, ReadFailed) as exc:
        raise ProbeError(f"{url}: {exc}" if isinstance(exc, ReadFailed) else str(exc)) from None
    finally:
        session.close()
    where = f"unit {unit} {table} {address}..{address + count - 1}"
    if isinstance(reply, str):
        raise ProbeError(f"{url} {where}: {reply}")
    if reply.exception_code:
        code = reply.exception_code
        meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
        raise ProbeError(f"{where}: Modbus exception {code}: {meaning}")
    values = _bits(reply.data) if table.holds_bits else _registers(reply.data)
    if len(values) < count:
        raise ProbeError(f"{url} {where}: short response, {len(values)} of {count}")
    return values[:count]


def _registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data[: len(data) // 2 * 2]))


def _bits(data: bytes) -> list[int]:
    return [(byte >> bit) & 1 for byte in data for bit in range(8)]


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
