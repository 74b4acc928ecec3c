"""Register words <-> values for every Modbus data type and word order.

Byte orders are named after the value's big-endian bytes A B C D (A most significant) and say
in which order those bytes sit on the wire, two per register:

    ABCD  registers [AB, CD]   big-endian (Modbus standard, most PLCs)
    CDAB  registers [CD, AB]   word swap (many energy meters and VFDs)
    BADC  registers [BA, DC]   byte swap inside each register
    DCBA  registers [DC, BA]   little-endian

64-bit values extend the same patterns to bytes A..H: ABCD is [AB, CD, EF, GH], CDAB is
[GH, EF, CD, AB] (register order reversed), BADC is [BA, DC, FE, HG], DCBA is
[HG, FE, DC, BA]. 16-bit values only have a byte order: ABCD and CDAB read [AB], BADC and DCBA
read [BA].

Every order reduces to one `struct` unpack: either on the wire bytes or on the wire bytes
with each register's two bytes exchanged, read big- or little-endian. `RegisterBlockDecoder`
uses that to decode all tags of a whole coalesced read with a few precompiled `struct.Struct`
calls instead of one call per register.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from itertools import chain

import numpy as np
import numpy.typing as npt


class DataType(StrEnum):
    """What a tag's registers (or bit) hold."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BIT = "bit"  # one bit of a holding/input register
    BOOL = "bool"  # a coil or discrete input


class WordOrder(StrEnum):
    """Byte order of a value on the wire, relative to big-endian ABCD (see module docstring)."""

    ABCD = "ABCD"
    DCBA = "DCBA"
    BADC = "BADC"
    CDAB = "CDAB"


class _Buffer(IntEnum):
    """Which byte string a value is unpacked from."""

    WIRE = 0  # registers as sent: big-endian words
    SWAPPED = 1  # the two bytes of every register exchanged


REGISTER_WIDTH: dict[DataType, int] = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
    DataType.BIT: 1,
    DataType.BOOL: 1,
}

_STRUCT_CODE: dict[DataType, str] = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
    DataType.BIT: "H",
}

# (buffer, struct byte order) that turns each wire order back into the value.
_LAYOUT: dict[WordOrder, tuple[_Buffer, str]] = {
    WordOrder.ABCD: (_Buffer.WIRE, ">"),
    WordOrder.DCBA: (_Buffer.WIRE, "<"),
    WordOrder.BADC: (_Buffer.SWAPPED, ">"),
    WordOrder.CDAB: (_Buffer.SWAPPED, "<"),
}


def _layout(dtype: DataType, order: WordOrder) -> tuple[_Buffer, str]:
    """Bit numbering is on the register value as read, so a bit field ignores the order."""
    if dtype is DataType.BIT:
        return _Buffer.WIRE, ">"
    return _LAYOUT[order]


def _swap_bytes(data: bytes) -> bytes:
    """Exchange the two bytes of every 16-bit word."""
    count = len(data) // 2
    return struct.pack(f"<{count}H", *struct.unpack(f">{count}H", data))


def encode(
    value: float, dtype: DataType, order: WordOrder = WordOrder.ABCD, *, bit: int = 0
) -> list[int]:
    """The register words a device holds for `value` (used by tests and probing tools).

    A bit field encodes to the register with only that bit set (or zero).
    """
    if dtype is DataType.BOOL:
        raise ValueError("bool lives in a coil or discrete input, not in registers")
    if dtype is DataType.BIT:
        return [(1 << bit) if value else 0]
    buffer, endian = _layout(dtype, order)
    code = _STRUCT_CODE[dtype]
    raw = value if code in "fd" else int(value)
    data = struct.pack(endian + code, raw)
    if buffer is _Buffer.SWAPPED:
        data = _swap_bytes(data)
    return list(struct.unpack(f">{len(data) // 2}H", data))


def decode(
    registers: Sequence[int],
    dtype: DataType,
    order: WordOrder = WordOrder.ABCD,
    *,
    bit: int = 0,
) -> int | float:
    """The exact value of one tag from its register words (no scaling; ints stay ints)."""
    width = REGISTER_WIDTH[dtype]
    if dtype is DataType.BOOL or len(registers) != width:
        raise ValueError(f"{dtype} needs {width} register(s), got {len(registers)}")
    buffer, endian = _layout(dtype, order)
    data = struct.pack(f">{width}H", *registers)
    if buffer is _Buffer.SWAPPED:
        data = _swap_bytes(data)
    (raw,) = struct.unpack(endian + _STRUCT_CODE[dtype], data)
    return (raw >> bit) & 1 if dtype is DataType.BIT else raw


@dataclass(frozen=True, slots=True)
class Field:
    """One tag inside a register block: where it starts and how to turn it into a value."""

    start: int  # register offset inside the block
    dtype: DataType
    order: WordOrder = WordOrder.ABCD
    bit: int = 0
    scale: float = 1.0
    offset: float = 0.0

    @property
    def end(self) -> int:
        return self.start + REGISTER_WIDTH[self.dtype]


class RegisterBlockDecoder:
    """Decodes every field of a fixed block layout from one read's registers.

    Fields are grouped by (buffer, byte order) into "lanes": each lane is one precompiled
    `struct.Struct` whose format skips the bytes between its fields, so a block costs one
    `unpack_from` per lane rather than one per register. Fields that would overlap inside a
    lane (several bits of one register) share an entry or go to a further lane.
    """

    def __init__(self, fields: Sequence[Field], count: int) -> None:
        if any(f.dtype is DataType.BOOL or f.start < 0 or f.end > count for f in fields):
            raise ValueError(f"every field must be a register type inside 0..{count}")
        self._count = count
        self.wire_size = 2 * count  # bytes of the registers in a response
        self._wire = struct.Struct(f">{count}H")
        # lane key -> list of lanes; each lane is a list of (start, dtype) entries sorted by start
        lanes: dict[tuple[_Buffer, str], list[list[tuple[int, DataType]]]] = {}
        slots: dict[tuple[_Buffer, str, int, DataType], tuple[tuple[_Buffer, str], int, int]] = {}
        for field in sorted(fields, key=lambda f: f.start):
            key = _layout(field.dtype, field.order)
            entry = (field.start, field.dtype)
            if (*key, *entry) in slots:
                continue
            group = lanes.setdefault(key, [])
            lane_index = next(
                (i for i, lane in enumerate(group) if _entry_end(lane[-1]) <= field.start),
                len(group),
            )
            if lane_index == len(group):
                group.append([])
            group[lane_index].append(entry)
            slots[(*key, *entry)] = (key, lane_index, len(group[lane_index]) - 1)

        self._lanes: list[tuple[struct.Struct, _Buffer]] = []
        lane_number: dict[tuple[tuple[_Buffer, str], int], int] = {}
        for key, group in lanes.items():
            for i, lane in enumerate(group):
                lane_number[(key, i)] = len(self._lanes)
                self._lanes.append((struct.Struct(_lane_format(key[1], lane)), key[0]))
        self._needs_swapped = any(buffer is _Buffer.SWAPPED for _, buffer in self._lanes)

        taps: list[tuple[int, int, int | None, float, float]] = []
        for field in fields:
            key, lane_index, position = slots[
                (*_layout(field.dtype, field.order), field.start, field.dtype)
            ]
            shift = field.bit if field.dtype is DataType.BIT else None
            taps.append(
                (lane_number[(key, lane_index)], position, shift, field.scale, field.offset)
            )
        # Without bit fields and 64-bit integers (exact only as Python ints), the whole block
        # is scaled in one vectorised step: values = raws[order] * scale + offset.
        self._vector = not any(
            f.dtype in (DataType.BIT, DataType.INT64, DataType.UINT64) for f in fields
        )
        lane_starts = [0]
        for layout, _ in self._lanes:
            lane_starts.append(lane_starts[-1] + len(layout.unpack_from(bytes(layout.size))))
        self._order = np.array(
            [lane_starts[lane] + position for lane, position, *_ in taps], dtype=np.intp
        )
        # kept only for the per-field path: a tuple a register is most of a block's memory
        self._taps = [] if self._vector else taps
        self._scale = np.array([f.scale for f in fields], dtype=np.float64)
        self._offset = np.array([f.offset for f in fields], dtype=np.float64)
        self._plain = bool(np.all(self._scale == 1.0) and np.all(self._offset == 0.0))
        self._in_order = bool(np.array_equal(self._order, np.arange(len(fields))))

    def decode(self, registers: Sequence[int]) -> Sequence[float] | npt.NDArray[np.float64]:
        """Scaled values (raw * scale + offset) of all fields, in the order they were given."""
        return self.decode_wire(self._wire.pack(*registers))

    def decode_wire(self, wire: bytes) -> Sequence[float] | npt.NDArray[np.float64]:
        """`decode` on the registers as the response carries them (big-endian words): the
        pipelined client hands these bytes on without making a list of ints."""
        swapped = b""
        if self._needs_swapped:
            flipped = bytearray(len(wire))
            flipped[0::2], flipped[1::2] = wire[1::2], wire[0::2]
            swapped = bytes(flipped)
        buffers = (wire, swapped)
        raws = [layout.unpack_from(buffers[buffer]) for layout, buffer in self._lanes]
        if self._vector:
            flat = np.fromiter(chain.from_iterable(raws), np.float64, len(self._order))
            block = flat if self._in_order else flat[self._order]
            return block if self._plain else block * self._scale + self._offset
        values: list[float] = []
        for lane, position, shift, scale, offset in self._taps:
            raw = raws[lane][position]
            if shift is not None:
                raw = (raw >> shift) & 1
            values.append(raw * scale + offset)
        return values


def _entry_end(entry: tuple[int, DataType]) -> int:
    return entry[0] + REGISTER_WIDTH[entry[1]]


def _lane_format(endian: str, lane: Sequence[tuple[int, DataType]]) -> str:
    """A struct format reading each entry at its byte offset and skipping everything else."""
    parts = [endian]
    position = 0
    for start, dtype in lane:
        if start > position:
            parts.append(f"{(start - position) * 2}x")
        parts.append(_STRUCT_CODE[dtype])
        position = start + REGISTER_WIDTH[dtype]
    return "".join(parts)


class BitBlockDecoder:
    """Decodes coils or discrete inputs of one read: 1.0 for on, 0.0 for off."""

    def __init__(self, starts: Sequence[int], count: int) -> None:
        if any(not 0 <= start < count for start in starts):
            raise ValueError(f"every bit must be inside 0..{count - 1}")
        self._starts = np.array(starts, dtype=np.intp)
        self.wire_size = (count + 7) // 8  # bytes of the bits in a response

    def decode(self, bits: Sequence[int] | npt.NDArray[np.uint8]) -> np.ndarray:
        return np.asarray(bits, dtype=np.float64)[self._starts]

    def decode_wire(self, data: bytes) -> np.ndarray:
        """`decode` on the bits as the response packs them (LSB first in each byte)."""
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return self.decode(bits)
