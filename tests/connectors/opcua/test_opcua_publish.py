"""The fast PublishResponse decoder reads what asyncua's encoder writes, value for value as
asyncua's own decoder and `datavalue.decode` read it, and hands anything else to asyncua."""

from __future__ import annotations

from datetime import UTC, datetime

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from connectors.opcua.datavalue import decoded
from connectors.opcua.publish import Changes, decode_publish

T = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
NOW_NS = 42


def response(*data: object) -> ua.PublishResponse:
    message = ua.NotificationMessage(SequenceNumber=9, PublishTime=T, NotificationData=list(data))
    result = ua.PublishResult(
        SubscriptionId=5,
        AvailableSequenceNumbers=[8, 9],
        MoreNotifications=True,
        NotificationMessage=message,
    )
    return ua.PublishResponse(Parameters=result)


def items(*values: ua.DataValue) -> ua.DataChangeNotification:
    return ua.DataChangeNotification(
        MonitoredItems=[
            ua.MonitoredItemNotification(ClientHandle=i, Value=v) for i, v in enumerate(values)
        ]
    )


def both_ways(sent: ua.PublishResponse) -> tuple[ua.PublishResult, ua.PublishResult]:
    wire = struct_to_binary(sent)
    fast = decode_publish(Buffer(wire)).Parameters
    slow = struct_from_binary(ua.PublishResponse, Buffer(wire)).Parameters
    return fast, slow


def test_numbers_statuses_and_timestamps_read_as_asyncua_reads_them() -> None:
    change = items(
        ua.DataValue(ua.Variant(1.5, ua.VariantType.Double), SourceTimestamp=T, ServerTimestamp=T),
        ua.DataValue(ua.Variant(-3, ua.VariantType.Int32), ServerTimestamp=T),
        ua.DataValue(ua.Variant(True), SourceTimestamp=T),
        ua.DataValue(ua.Variant(2.25, ua.VariantType.Float), SourceTimestamp=T),
        ua.DataValue(ua.Variant(4_000_000_001, ua.VariantType.UInt32), SourceTimestamp=T),
        ua.DataValue(
            ua.Variant(7.0, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
            SourceTimestamp=T,
        ),
        ua.DataValue(
            ua.Variant(0.0, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure),
            SourceTimestamp=T,
        ),
    )
    fast, slow = both_ways(response(change))
    (columns,) = fast.NotificationMessage.NotificationData
    assert isinstance(columns, Changes)
    (expected,) = slow.NotificationMessage.NotificationData
    want = list(decoded(((m.ClientHandle, m.Value) for m in expected.MonitoredItems), []))
    got = list(columns.decoded(NOW_NS))
    assert [g[:1] + g[2:] for g in got] == [w[:1] + w[2:] for w in want]
    assert [g[1] for g in got[:6]] == [w[1] for w in want[:6]]  # the Bad one is NaN on both
    assert got[-1][4] == "server reports BadSensorFailure"
    assert (fast.SubscriptionId, fast.AvailableSequenceNumbers, fast.MoreNotifications) == (
        5,
        [8, 9],
        True,
    )
    assert fast.NotificationMessage.SequenceNumber == 9
    assert fast.NotificationMessage.PublishTime == T


def test_anything_else_goes_to_asyncua_whole() -> None:
    text = items(ua.DataValue(ua.Variant(1.0), SourceTimestamp=T), ua.DataValue(ua.Variant("on")))
    status = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))
    for sent in (response(text), response(status), response()):
        fast, slow = both_ways(sent)
        assert fast == slow
