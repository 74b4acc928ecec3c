"""Engineering values to Modbus register words, the way real devices lay them out.

`word_order` names the byte order of the value against its big-endian bytes ABCD: ABCD is plain
big-endian, CDAB swaps the 16-bit words ("little-endian word order", common on meters and drives),
BADC swaps the bytes inside each word and DCBA reverses all four. A 16-bit value has bytes AB:
ABCD/CDAB keep them, BADC/DCBA swap them. Raw = value / scale, so value = raw * scale.

Every Modbus unit with limit alarms also shows them as alarm bits, as drives and controllers do:
discrete input ALARM_BITS + N (10017 + N in a manual's numbering) is on while the unit's N-th
limit alarm (plc_sim.alarms.modbus_alarms) is active. They sit near the devices' own status bits,
so a client reads them with those, at no extra request; a line file may not map a signal there.
"""

from __future__ import annotations

import math
import struct

REGISTER_WIDTH: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
DTYPE_LIMITS: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
ALARM_BITS = 16  # discrete input of each Modbus unit's first limit alarm
MAX_ALARM_BITS = 16  # discrete inputs ALARM_BITS.. reserved for them
_FORMATS = {
    dtype: struct.Struct(">" + code)
    for dtype, code in (("int16", "h"), ("uint16", "H"), ("int32", "i"), ("uint32", "I"))
}
_FORMATS["float32"] = struct.Struct(">f")
_WORD_SWAP = frozenset({"CDAB", "DCBA"})
_BYTE_SWAP = frozenset({"BADC", "DCBA"})


def encode(value: float, dtype: str, word_order: str = "ABCD", scale: float = 1.0) -> list[int]:
    """Register words (0..65535) holding `value`; integers round and saturate at their limits."""
    raw = value / scale
    limits = DTYPE_LIMITS.get(dtype)
    if limits is not None:
        raw = min(limits[1], max(limits[0], round(raw) if math.isfinite(raw) else 0))
    data = _FORMATS[dtype].pack(raw)
    if word_order in _BYTE_SWAP:
        data = bytes(data[i ^ 1] for i in range(len(data)))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if word_order in _WORD_SWAP:
        words.reverse()
    return words
