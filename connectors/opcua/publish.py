"""PublishResponses decoded straight into columns: the hot path of a subscription.

asyncua decodes every notification into a DataValue, a Variant, a StatusCode and two datetimes
(two thirds of the connector's CPU at 5,000 changes a second). The data change of a scalar number
needs none of them: `decode_publish` reads the response's bytes with `struct` and gives each
DataChangeNotification as `Changes` (client handles, values, status codes and timestamps in ns,
as lists). Anything else a server may send (other notification types, arrays, strings, null
values, diagnostics) makes it hand the whole response to asyncua's own decoder, so nothing is
lost: the callback then gets asyncua's objects, as before.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uatypes import win_epoch_to_datetime

from connectors.opcua.datavalue import QUALITY_BY_SEVERITY, bad_status
from core.sample import Quality

_FILETIME_EPOCH = 116_444_736_000_000_000  # 1970-01-01 in 100 ns since 1601-01-01
_DATA_CHANGE = ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary
_SCALARS = {  # Variant type id -> struct format of its scalar value (numbers and Boolean)
    1: "?", 2: "b", 3: "B", 4: "h", 5: "H", 6: "i", 7: "I", 8: "q", 9: "Q", 10: "f", 11: "d",
}  # fmt: skip
_SIZES = {kind: struct.calcsize("<" + fmt) for kind, fmt in _SCALARS.items()}
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_HEADER = struct.Struct("<qIIB")  # Timestamp, RequestHandle, ServiceResult, DiagnosticInfo mask


class _Unusual(Exception):
    """Something the fast path does not decode: asyncua decodes the whole response."""


@dataclass(slots=True)
class Changes:
    """One DataChangeNotification as columns (timestamps: ns since the epoch, 0 if absent)."""

    handles: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    source_ns: list[int] = field(default_factory=list)
    server_ns: list[int] = field(default_factory=list)

    def decoded(self, now_ns: int) -> Iterator[tuple[int, float, Quality, int, str | None]]:
        """(client handle, value, quality, timestamp, BAD reason) per change, as `datavalue.
        decode` gives them: source time, else server time, else `now_ns`; Bad is NaN."""
        for handle, value, status, source, server in zip(
            self.handles, self.values, self.statuses, self.source_ns, self.server_ns, strict=True
        ):
            quality = QUALITY_BY_SEVERITY[status >> 30]
            ts = source or server or now_ns
            if quality is Quality.BAD:
                yield handle, math.nan, quality, ts, bad_status(ua.StatusCode(ua.UInt32(status)))
            else:
                yield handle, value, quality, ts, None


def decode_publish(data: Buffer) -> ua.PublishResponse:
    """The response, its data changes as `Changes` where the fast path can read them."""
    raw = bytes(data)
    try:
        return _fast(memoryview(raw))
    except (_Unusual, struct.error, IndexError):
        return struct_from_binary(ua.PublishResponse, Buffer(raw))


def _fast(raw: memoryview) -> ua.PublishResponse:
    pos = _skip_response_header(raw, 0)
    (subscription_id,) = _U32.unpack_from(raw, pos)
    (count,) = _I32.unpack_from(raw, pos + 4)
    pos += 8
    available = list(_U32.unpack_from(raw, pos + 4 * i)[0] for i in range(max(count, 0)))
    pos += 4 * max(count, 0)
    more = raw[pos] != 0
    (sequence,) = _U32.unpack_from(raw, pos + 1)
    (publish_time,) = _I64.unpack_from(raw, pos + 5)
    (count,) = _I32.unpack_from(raw, pos + 13)
    pos += 17
    data: list[Changes] = []
    for _ in range(max(count, 0)):
        pos, changes = _notification(raw, pos)
        data.append(changes)
    message = ua.NotificationMessage(
        SequenceNumber=sequence,
        PublishTime=win_epoch_to_datetime(publish_time),
        NotificationData=data,
    )
    result = ua.PublishResult(
        SubscriptionId=subscription_id,
        AvailableSequenceNumbers=available,
        MoreNotifications=more,
        NotificationMessage=message,
    )
    return ua.PublishResponse(Parameters=result)


def _skip_response_header(raw: memoryview, pos: int) -> int:
    """After the ResponseHeader; anything but an empty diagnostic, string table and
    additional header is unusual."""
    pos = _skip_typeid(raw, pos)  # the response's own TypeId
    _, _, _, diagnostics = _HEADER.unpack_from(raw, pos)
    pos += _HEADER.size
    if diagnostics:
        raise _Unusual
    (strings,) = _I32.unpack_from(raw, pos)
    if strings > 0:
        raise _Unusual
    pos = _skip_typeid(raw, pos + 4)  # AdditionalHeader: an ExtensionObject
    if raw[pos] != 0:
        raise _Unusual
    return pos + 1


def _skip_typeid(raw: memoryview, pos: int) -> int:
    return _typeid(raw, pos)[0]


def _typeid(raw: memoryview, pos: int) -> tuple[int, int]:
    """(position after, numeric identifier) of a NodeId in namespace 0."""
    kind = raw[pos]
    if kind == 0:
        return pos + 2, raw[pos + 1]
    if kind == 1 and raw[pos + 1] == 0:
        return pos + 4, _U16.unpack_from(raw, pos + 2)[0]
    if kind == 2 and _U16.unpack_from(raw, pos + 1)[0] == 0:
        return pos + 7, _U32.unpack_from(raw, pos + 3)[0]
    raise _Unusual


def _notification(raw: memoryview, pos: int) -> tuple[int, Changes]:
    """One ExtensionObject of NotificationData: a DataChangeNotification, else unusual."""
    pos, typeid = _typeid(raw, pos)
    if typeid != _DATA_CHANGE or raw[pos] != 1:
        raise _Unusual
    (length,) = _I32.unpack_from(raw, pos + 1)
    end = pos + 5 + length
    (count,) = _I32.unpack_from(raw, pos + 5)
    pos += 9
    changes = Changes()
    for _ in range(max(count, 0)):
        pos = _item(raw, pos, changes)
    if pos > end:
        raise _Unusual
    return end, changes  # DiagnosticInfos, if any, are skipped with the rest of the body


def _item(raw: memoryview, pos: int, changes: Changes) -> int:
    """One MonitoredItemNotification: ClientHandle and a DataValue of a scalar number."""
    (handle,) = _U32.unpack_from(raw, pos)
    mask = raw[pos + 4]
    pos += 5
    if not mask & 0x01:
        raise _Unusual  # no value: asyncua's path marks it BAD with the reason
    kind = raw[pos]
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise _Unusual  # arrays, strings, dates, null: the slow path explains them
    (value,) = struct.unpack_from("<" + fmt, raw, pos + 1)
    pos += 1 + _SIZES[kind]
    status = source = server = 0
    if mask & 0x02:
        (status,) = _U32.unpack_from(raw, pos)
        pos += 4
    if mask & 0x04:
        source = _ns(_I64.unpack_from(raw, pos)[0])
        pos += 8
    if mask & 0x10:
        pos += 2  # SourcePicoseconds: below our resolution
    if mask & 0x08:
        server = _ns(_I64.unpack_from(raw, pos)[0])
        pos += 8
    if mask & 0x20:
        pos += 2
    changes.handles.append(handle)
    changes.values.append(float(value))
    changes.statuses.append(status)
    changes.source_ns.append(source)
    changes.server_ns.append(server)
    return pos


def _ns(filetime: int) -> int:
    """ns since the epoch of an OPC UA DateTime (0: absent)."""
    return (filetime - _FILETIME_EPOCH) * 100 if filetime > 0 else 0
