"""Codec: every type x order against register words written out by hand."""

from __future__ import annotations

import math
import random
import struct

import pytest

from connectors.modbus.codec import (
    BitBlockDecoder,
    DataType,
    Field,
    RegisterBlockDecoder,
    WordOrder,
    decode,
    encode,
)

T = DataType
W = WordOrder

# (type, value, order, registers on the wire), all computed by hand from the big-endian bytes.
CASES = [
    (T.UINT16, 0x0102, W.ABCD, [0x0102]),
    (T.UINT16, 0x0102, W.CDAB, [0x0102]),
    (T.UINT16, 0x0102, W.BADC, [0x0201]),
    (T.UINT16, 0x0102, W.DCBA, [0x0201]),
    (T.INT16, -2, W.ABCD, [0xFFFE]),
    (T.INT16, -2, W.CDAB, [0xFFFE]),
    (T.INT16, -2, W.BADC, [0xFEFF]),
    (T.INT16, -2, W.DCBA, [0xFEFF]),
    (T.UINT32, 0x01020304, W.ABCD, [0x0102, 0x0304]),
    (T.UINT32, 0x01020304, W.CDAB, [0x0304, 0x0102]),
    (T.UINT32, 0x01020304, W.BADC, [0x0201, 0x0403]),
    (T.UINT32, 0x01020304, W.DCBA, [0x0403, 0x0201]),
    (T.INT32, 0x01020304, W.ABCD, [0x0102, 0x0304]),
    (T.INT32, -2, W.ABCD, [0xFFFF, 0xFFFE]),
    (T.INT32, -2, W.CDAB, [0xFFFE, 0xFFFF]),
    (T.INT32, -2, W.BADC, [0xFFFF, 0xFEFF]),
    (T.INT32, -2, W.DCBA, [0xFEFF, 0xFFFF]),
    (T.FLOAT32, 1.0, W.ABCD, [0x3F80, 0x0000]),
    (T.FLOAT32, 1.0, W.CDAB, [0x0000, 0x3F80]),
    (T.FLOAT32, 1.0, W.BADC, [0x803F, 0x0000]),
    (T.FLOAT32, 1.0, W.DCBA, [0x0000, 0x803F]),
    (T.FLOAT32, -2.5, W.ABCD, [0xC020, 0x0000]),
    (T.FLOAT32, -2.5, W.CDAB, [0x0000, 0xC020]),
    (T.FLOAT32, -2.5, W.BADC, [0x20C0, 0x0000]),
    (T.FLOAT32, -2.5, W.DCBA, [0x0000, 0x20C0]),
    (T.UINT64, 0x0102030405060708, W.ABCD, [0x0102, 0x0304, 0x0506, 0x0708]),
    (T.UINT64, 0x0102030405060708, W.CDAB, [0x0708, 0x0506, 0x0304, 0x0102]),
    (T.UINT64, 0x0102030405060708, W.BADC, [0x0201, 0x0403, 0x0605, 0x0807]),
    (T.UINT64, 0x0102030405060708, W.DCBA, [0x0807, 0x0605, 0x0403, 0x0201]),
    (T.INT64, -2, W.ABCD, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
    (T.INT64, -2, W.CDAB, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
    (T.INT64, -2, W.BADC, [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF]),
    (T.INT64, -2, W.DCBA, [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF]),
    (T.FLOAT64, 1.0, W.ABCD, [0x3FF0, 0x0000, 0x0000, 0x0000]),
    (T.FLOAT64, 1.0, W.CDAB, [0x0000, 0x0000, 0x0000, 0x3FF0]),
    (T.FLOAT64, 1.0, W.BADC, [0xF03F, 0x0000, 0x0000, 0x0000]),
    (T.FLOAT64, 1.0, W.DCBA, [0x0000, 0x0000, 0x0000, 0xF03F]),
]


@pytest.mark.parametrize(("dtype", "value", "order", "words"), CASES)
def test_encode_gives_the_hand_computed_words(dtype, value, order, words):
    assert encode(value, dtype, order) == words


@pytest.mark.parametrize(("dtype", "value", "order", "words"), CASES)
def test_decode_gives_the_exact_value(dtype, value, order, words):
    assert decode(words, dtype, order) == value


def test_every_type_and_order_is_covered():
    covered = {(dtype, order) for dtype, _, order, _ in CASES}
    numeric = [t for t in DataType if t not in (T.BIT, T.BOOL)]
    assert covered >= {(t, o) for t in numeric for o in WordOrder}


def test_block_decoder_reads_all_cases_from_one_block_with_holes():
    """All hand cases side by side, one register apart, decoded in one pass."""
    registers: list[int] = []
    fields: list[Field] = []
    for dtype, _, order, words in CASES:
        fields.append(Field(len(registers), dtype, order))
        registers += [*words, 0xDEAD]
    decoder = RegisterBlockDecoder(fields, len(registers))
    assert decoder.decode(registers) == [float(value) for _, value, _, _ in CASES]


def _random_value(rng: random.Random, dtype: DataType) -> float:
    bits = {T.INT16: 16, T.UINT16: 16, T.INT32: 32, T.UINT32: 32, T.INT64: 64, T.UINT64: 64}
    if dtype is T.FLOAT32:
        return struct.unpack(">f", struct.pack(">f", rng.uniform(-1e6, 1e6)))[0]
    if dtype is T.FLOAT64:
        return rng.uniform(-1e12, 1e12)
    width = bits[dtype]
    if dtype.value.startswith("u"):
        return rng.randrange(0, 2**width)
    return rng.randrange(-(2 ** (width - 1)), 2 ** (width - 1))


@pytest.mark.parametrize("dtype", [t for t in DataType if t not in (T.BIT, T.BOOL)])
@pytest.mark.parametrize("order", list(WordOrder))
def test_round_trip(dtype, order):
    rng = random.Random(f"{dtype}{order}")
    for _ in range(200):
        value = _random_value(rng, dtype)
        assert decode(encode(value, dtype, order), dtype, order) == value


def test_scale_and_offset_apply_as_raw_times_scale_plus_offset():
    fields = [
        Field(0, T.INT16, scale=0.1),
        Field(1, T.UINT32, W.CDAB, scale=0.01, offset=-5.0),
        Field(3, T.FLOAT32, offset=273.15),
    ]
    registers = [
        *encode(-123, T.INT16),
        *encode(150_000, T.UINT32, W.CDAB),
        *encode(1.0, T.FLOAT32),
    ]
    values = RegisterBlockDecoder(fields, len(registers)).decode(registers)
    assert values == pytest.approx([-12.3, 1495.0, 274.15])
    assert all(isinstance(v, float) for v in values)


def test_bit_fields_share_one_register_and_ignore_others():
    status = 0b1000_0000_0000_1001  # bits 0, 3 and 15 set
    fields = [Field(1, T.BIT, bit=b) for b in (0, 1, 3, 15)] + [Field(0, T.UINT16)]
    decoder = RegisterBlockDecoder(fields, 2)
    assert decoder.decode([7, status]) == [1.0, 0.0, 1.0, 1.0, 7.0]
    assert decode([status], T.BIT, bit=3) == 1
    assert decode([status], T.BIT, bit=2) == 0
    assert encode(True, T.BIT, bit=3) == [0b1000]
    assert encode(False, T.BIT, bit=3) == [0]


def test_bit_field_over_a_word_tag_of_the_same_register():
    """Overlapping fields of different types go to separate lanes and still decode."""
    decoder = RegisterBlockDecoder([Field(0, T.UINT32), Field(1, T.BIT, bit=0)], 2)
    assert decoder.decode([0x0001, 0x0003]) == [float(0x00010003), 1.0]


def test_bit_block_decoder():
    decoder = BitBlockDecoder([0, 2, 9], 10)
    bits = [True, True, False, False, False, False, False, False, False, True, False]
    assert list(decoder.decode(bits)) == [1.0, 0.0, 1.0]
    # as a response packs them: LSB first, bit 9 in the second byte
    assert list(decoder.decode_wire(bytes([0b00000011, 0b00000010]))) == [1.0, 0.0, 1.0]


def test_register_block_decodes_the_response_bytes_as_the_words():
    """decode_wire reads the big-endian words of a response, every byte order included."""
    words = [*encode(1.5, T.FLOAT32, W.CDAB), *encode(-2, T.INT32, W.BADC), 0x0102]
    fields = [Field(0, T.FLOAT32, W.CDAB), Field(2, T.INT32, W.BADC), Field(4, T.UINT16)]
    decoder = RegisterBlockDecoder(fields, 5)
    wire = b"".join(word.to_bytes(2, "big") for word in words)
    assert list(decoder.decode_wire(wire)) == list(decoder.decode(words)) == [1.5, -2.0, 258.0]


def test_field_outside_block_is_refused():
    with pytest.raises(ValueError, match="inside"):
        RegisterBlockDecoder([Field(1, T.FLOAT32)], 2)
    with pytest.raises(ValueError, match="inside"):
        BitBlockDecoder([3], 3)


def test_wrong_word_count_is_refused():
    with pytest.raises(ValueError, match="needs 2"):
        decode([1], T.FLOAT32)


def test_nan_survives():
    assert math.isnan(decode(encode(math.nan, T.FLOAT32, W.CDAB), T.FLOAT32, W.CDAB))


def test_a_full_block_of_mixed_fields_decodes_like_each_field_alone():
    """125 registers of every type and word order, scaled: the block decoder (the hot path,
    its speed measured in bench/) agrees with decoding each field on its own."""
    types = [T.INT16, T.FLOAT32, T.UINT32, T.INT16, T.FLOAT64, T.UINT16]
    orders = list(WordOrder)
    fields, start = [], 0
    while True:
        dtype = types[len(fields) % len(types)]
        width = {T.INT16: 1, T.UINT16: 1, T.FLOAT32: 2, T.UINT32: 2, T.FLOAT64: 4}[dtype]
        if start + width > 125:
            break
        fields.append(Field(start, dtype, orders[len(fields) % 4], scale=0.1))
        start += width
    decoder = RegisterBlockDecoder(fields, 125)
    registers = list(range(125))
    values = decoder.decode(registers)
    assert len(values) == len(fields)
    for field, value in zip(fields, values, strict=True):
        alone = decode(registers[field.start : field.end], field.dtype, field.order)
        assert value == pytest.approx(alone * 0.1, nan_ok=True)
