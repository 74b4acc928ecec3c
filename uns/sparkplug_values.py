"""Sparkplug B metrics as data-model readings: each value read by its datatype, each metric name
turned into a signal name (docs/data-model.md, "Values" and docs/unified-namespace.md).

A metric's value sits in the protobuf field its datatype fixes (Int8-UInt32 in `int_value`,
64-bit integers and DateTime in `long_value`, arrays in `bytes_value`, ...), so reading one
field for every metric stores zeros for most. Signed integers travel as their unsigned two's
complement (-6 as an Int32 is 4294967290); some edges sign-extend the small ones to 32 bits, so
the value is taken modulo its own width first.
"""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta

from core.units import suffix_for, unit_of
from uns.sparkplug_schema import Metric

Value = float | str | None  # a number, a text, or None for null
Element = tuple[str, Value]  # ("" for a scalar or "[i]" for an array element, its value)

DATATYPE_NAMES = (
    "Unknown",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Float",
    "Double",
    "Boolean",
    "String",
    "DateTime",
    "Text",
    "UUID",
    "DataSet",
    "Bytes",
    "File",
    "Template",
    "PropertySet",
    "PropertySetList",
    "Int8Array",
    "Int16Array",
    "Int32Array",
    "Int64Array",
    "UInt8Array",
    "UInt16Array",
    "UInt32Array",
    "UInt64Array",
    "FloatArray",
    "DoubleArray",
    "BooleanArray",
    "StringArray",
    "DateTimeArray",
)
_SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}
_UNSIGNED = frozenset({5, 6, 7, 8})
_NUMBERS = frozenset({9, 10})  # Float, Double
_BOOLEAN, _DATETIME = 11, 13
_TEXTS = frozenset({12, 14, 15})  # String, Text, UUID
_ARRAY_FORMATS = dict(zip(range(22, 32), "bhiqBHIQfd", strict=True))  # little endian
_BOOLEAN_ARRAY, _STRING_ARRAY, _DATETIME_ARRAY = 32, 33, 34
# A metric sent without its datatype (DDATA by alias from a host that lost the birth): read by
# the field that holds it.
_BY_FIELD = {
    "int_value": 7,
    "long_value": 8,
    "float_value": 9,
    "double_value": 10,
    "boolean_value": 11,
    "string_value": 12,
}
_STORED_SCALARS = frozenset({*_SIGNED_BITS, *_UNSIGNED, *_NUMBERS, *_TEXTS, _BOOLEAN, _DATETIME})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEPARATORS = re.compile(r"[/\s]+")


class UnsupportedDatatype(ValueError):
    """A datatype with no place in the data model (bytes, files, datasets, templates)."""


def datatype_name(code: int) -> str:
    return DATATYPE_NAMES[code] if 0 <= code < len(DATATYPE_NAMES) else f"datatype {code}"


def iso_ms(ms: int) -> str:
    """A Sparkplug DateTime (ms since the epoch) as ISO 8601 UTC, as `telemetry.text` holds it."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")[:-6] + "Z"


def scalar_elements(datatype: int) -> tuple[str, ...]:
    """The element suffixes of a metric before its first value: one for a scalar the data model
    stores, none for an array (its length comes with its value) or a refused datatype."""
    stored = datatype in _STORED_SCALARS or datatype == 0  # 0: read by the field that holds it
    return ("",) if stored else ()


def elements(metric: Metric, datatype: int) -> list[Element]:
    """The metric's value(s) read by `datatype` (the birth's when the metric carries none)."""
    if metric.is_null:
        return [("", None)]
    if not datatype:
        field = metric.WhichOneof("value")
        datatype = _BY_FIELD.get(field or "", 0)
    if datatype in _ARRAY_FORMATS or datatype in (_BOOLEAN_ARRAY, _STRING_ARRAY, _DATETIME_ARRAY):
        return [(f"[{i}]", v) for i, v in enumerate(_array(metric.bytes_value, datatype))]
    return [("", _scalar(metric, datatype))]


def _scalar(metric: Metric, datatype: int) -> Value:
    if datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        raw = (metric.long_value if bits == 64 else metric.int_value) % (1 << bits)
        return float(raw - (1 << bits) if raw >> (bits - 1) else raw)
    if datatype in _UNSIGNED:
        return float(metric.long_value if datatype == 8 else metric.int_value)
    if datatype in _NUMBERS:
        return float(metric.float_value if datatype == 9 else metric.double_value)
    if datatype == _BOOLEAN:
        return 1.0 if metric.boolean_value else 0.0
    if datatype in _TEXTS:
        return metric.string_value
    if datatype == _DATETIME:
        return iso_ms(metric.long_value)
    raise UnsupportedDatatype(f"{datatype_name(datatype)} has no place in the data model")


def _array(data: bytes, datatype: int) -> list[Value]:
    if datatype == _STRING_ARRAY:  # UTF-8 strings, each ended by a NUL byte
        return [part.decode("utf-8", "replace") for part in data.split(b"\0")[:-1]]
    if datatype == _BOOLEAN_ARRAY:  # a 4-byte little-endian count, then the bits, MSB first
        count = int.from_bytes(data[:4], "little")
        bits = [byte >> (7 - i) & 1 for byte in data[4:] for i in range(8)]
        return [float(bit) for bit in bits[:count]]
    code = "Q" if datatype == _DATETIME_ARRAY else _ARRAY_FORMATS[datatype]
    size = struct.calcsize(code)
    if len(data) % size:
        raise ValueError(
            f"{datatype_name(datatype)} of {len(data)} bytes (not a multiple of {size})"
        )
    values = struct.unpack(f"<{len(data) // size}{code}", data)
    if datatype == _DATETIME_ARRAY:
        return [iso_ms(v) for v in values]
    return [float(v) for v in values]


def signal_name(metric: str, unit: str = "") -> str:
    """The signal a metric is stored as: its folders (`Motor/Temperature`) joined by `_`
    (`Motor_Temperature`), with the unit of its engUnit property as the data model's suffix
    (`°C` -> `Motor_Temperature_c`) unless the name already carries that unit. A name of our own
    edge node (`temperature_c`, engUnit `°C`) stays as it is. Empty when nothing is left."""
    name = _SEPARATORS.sub("_", metric).strip("_")
    name = re.sub("_{2,}", "_", name)
    unit = unit.strip()
    if not name or not unit or unit_of(name) == unit:
        return name
    suffix = suffix_for(unit) or "_" + re.sub(r"\W+", "_", unit.lower()).strip("_")
    return name if suffix == "_" or name.endswith(suffix) else name + suffix
