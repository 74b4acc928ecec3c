"""Register encoding against words computed by hand (written literally, not recomputed)."""

from __future__ import annotations

import pytest

from plc_sim.registers import encode


@pytest.mark.parametrize(
    ("value", "dtype", "order", "scale", "words"),
    [
        # int16 x10: -12.3 -> raw -123 -> two's complement 0xFF85
        (-12.3, "int16", "ABCD", 0.1, [0xFF85]),
        # int16 x100: 50.00 Hz -> 5000 = 0x1388
        (50.0, "int16", "ABCD", 0.01, [0x1388]),
        # int16 x100 rounds to the nearest raw step: 7.256 bar -> 726
        (7.256, "int16", "ABCD", 0.01, [726]),
        # a 16-bit value byte-swapped (BADC/DCBA): 0x1234 -> 0x3412
        (0x1234, "int16", "BADC", 1.0, [0x3412]),
        (0x1234, "uint16", "CDAB", 1.0, [0x1234]),  # word swap is a no-op on one word
        (563, "uint16", "ABCD", 1.0, [563]),
        # integers saturate instead of wrapping
        (70000, "uint16", "ABCD", 1.0, [0xFFFF]),
        (-5, "uint16", "ABCD", 1.0, [0x0000]),
        (40000, "int16", "ABCD", 1.0, [0x7FFF]),
        # float32 1.0 = 0x3F800000 in the four byte orders
        (1.0, "float32", "ABCD", 1.0, [0x3F80, 0x0000]),
        (1.0, "float32", "CDAB", 1.0, [0x0000, 0x3F80]),
        (1.0, "float32", "BADC", 1.0, [0x803F, 0x0000]),
        (1.0, "float32", "DCBA", 1.0, [0x0000, 0x803F]),
        # float32 230.5 = 0x43668000
        (230.5, "float32", "ABCD", 1.0, [0x4366, 0x8000]),
        (230.5, "float32", "CDAB", 1.0, [0x8000, 0x4366]),
        # uint32 counter 0x01020304 in both word orders
        (0x01020304, "uint32", "ABCD", 1.0, [0x0102, 0x0304]),
        (0x01020304, "uint32", "CDAB", 1.0, [0x0304, 0x0102]),
        # uint32 x10 kWh counter: 123456.7 kWh -> 1234567 = 0x0012D687
        (123456.7, "uint32", "ABCD", 0.1, [0x0012, 0xD687]),
        # uint32 x100 hours, CDAB: 12.34 h -> 1234 = 0x000004D2
        (12.34, "uint32", "CDAB", 0.01, [0x04D2, 0x0000]),
        (-2, "int32", "ABCD", 1.0, [0xFFFF, 0xFFFE]),
    ],
)
def test_encode_by_hand(value: float, dtype: str, order: str, scale: float, words: list[int]):
    assert encode(value, dtype, order, scale) == words
