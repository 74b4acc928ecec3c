"""The Sparkplug B payload as protobuf messages, built from the wire contract at import time.

Sparkplug B payloads are protobuf (proto2) messages whose field numbers and types the
specification fixes (Sparkplug 3.0, chapter "Payloads"). This module declares the part of that
contract Shopfloor writes and reads: Payload (timestamp 1, metrics 2, seq 3), Metric (name 1,
alias 2, timestamp 3, datatype 4, is_null 7, properties 9, and the value oneof: int 10, long 11,
float 12, double 13, boolean 14, string 15, bytes 16 for arrays), PropertySet (keys 1, values 2)
and PropertyValue (type 1, is_null 2, int 3, long 4, float 5, double 6, boolean 7, string 8).
Fields we do not declare (templates, datasets, metadata) are kept as unknown fields by protobuf,
so a payload that carries them still parses. Declaring it here needs no protoc step and no
generated file. For the type checker, the same messages are declared as classes (what protoc's
type stubs would say); a test keeps their fields equal to the contract's.

Datatype codes are the specification's: Int32 3, Int64 4, Float 9, Double 10, Boolean 11,
String 12 (uns.sparkplug_values reads every one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

INT32, INT64, FLOAT, DOUBLE, BOOLEAN, STRING = 3, 4, 9, 10, 11, 12

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "shopfloor.sparkplug_b"

_VALUES = [
    ("int_value", _F.TYPE_UINT32),
    ("long_value", _F.TYPE_UINT64),
    ("float_value", _F.TYPE_FLOAT),
    ("double_value", _F.TYPE_DOUBLE),
    ("boolean_value", _F.TYPE_BOOL),
    ("string_value", _F.TYPE_STRING),
]


def _value_fields(first: int) -> list[tuple[str, int, int, int, str, bool]]:
    """The `value` oneof, numbered from `first` (it is the same in Metric and PropertyValue)."""
    return [
        (name, first + i, kind, _F.LABEL_OPTIONAL, "", True)
        for i, (name, kind) in enumerate(_VALUES)
    ]


# message: (field, number, protobuf type, label, message type or "", in the value oneof)
_MESSAGES: dict[str, list[tuple[str, int, int, int, str, bool]]] = {
    "PropertyValue": [
        ("type", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL, "", False),
        ("is_null", 2, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, "", False),
        *_value_fields(3),
    ],
    "PropertySet": [
        ("keys", 1, _F.TYPE_STRING, _F.LABEL_REPEATED, "", False),
        ("values", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "PropertyValue", False),
    ],
    "Metric": [
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, "", False),
        ("alias", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, "", False),
        ("timestamp", 3, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, "", False),
        ("datatype", 4, _F.TYPE_UINT32, _F.LABEL_OPTIONAL, "", False),
        ("is_null", 7, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, "", False),
        ("properties", 9, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "PropertySet", False),
        *_value_fields(10),
        ("bytes_value", 16, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, "", True),
    ],
    "Payload": [
        ("timestamp", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, "", False),
        ("metrics", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, "Metric", False),
        ("seq", 3, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, "", False),
    ],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The schema as a protobuf file descriptor (proto2: presence of every optional field)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="shopfloor_sparkplug_b.proto", package=_PACKAGE, syntax="proto2"
    )
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if any(in_oneof for *_, in_oneof in fields):
            message.oneof_decl.add(name="value")
        for field, number, kind, label, type_name, in_oneof in fields:
            declared = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                declared.type_name = f".{_PACKAGE}.{type_name}"
            if in_oneof:
                declared.oneof_index = 0
    return file


_pool = descriptor_pool.DescriptorPool()
_classes = message_factory.GetMessages([_file()], pool=_pool)

if TYPE_CHECKING:
    from google.protobuf.internal.containers import (
        RepeatedCompositeFieldContainer,
        RepeatedScalarFieldContainer,
    )
    from google.protobuf.message import Message

    class PropertyValue(Message):
        type: int
        is_null: bool
        int_value: int
        long_value: int
        float_value: float
        double_value: float
        boolean_value: bool
        string_value: str

        def __init__(
            self,
            *,
            type: int = ...,
            is_null: bool = ...,
            int_value: int = ...,
            long_value: int = ...,
            float_value: float = ...,
            double_value: float = ...,
            boolean_value: bool = ...,
            string_value: str = ...,
        ) -> None: ...

    class PropertySet(Message):
        @property
        def keys(self) -> RepeatedScalarFieldContainer[str]: ...
        @property
        def values(self) -> RepeatedCompositeFieldContainer[PropertyValue]: ...
        def __init__(
            self, *, keys: Iterable[str] | None = ..., values: Iterable[PropertyValue] | None = ...
        ) -> None: ...

    class Metric(Message):
        name: str
        alias: int
        timestamp: int
        datatype: int
        is_null: bool
        int_value: int
        long_value: int
        float_value: float
        double_value: float
        boolean_value: bool
        string_value: str
        bytes_value: bytes

        @property
        def properties(self) -> PropertySet: ...
        def __init__(
            self,
            *,
            name: str = ...,
            alias: int = ...,
            timestamp: int = ...,
            datatype: int = ...,
            is_null: bool = ...,
            properties: PropertySet | None = ...,
            int_value: int = ...,
            long_value: int = ...,
            float_value: float = ...,
            double_value: float = ...,
            boolean_value: bool = ...,
            string_value: str = ...,
            bytes_value: bytes = ...,
        ) -> None: ...

    class Payload(Message):
        timestamp: int
        seq: int

        @property
        def metrics(self) -> RepeatedCompositeFieldContainer[Metric]: ...
        def __init__(
            self, *, timestamp: int = ..., metrics: Iterable[Metric] | None = ..., seq: int = ...
        ) -> None: ...

else:
    Payload = _classes[f"{_PACKAGE}.Payload"]
    Metric = _classes[f"{_PACKAGE}.Metric"]
