"""DataValue -> Sample conversion, the batching buffer, deadband filters and hot-path speed."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from connectors.opcua import Config, build
from connectors.opcua.buffer import SampleBuffer
from connectors.opcua.client import _Loss, _Notifications, deadband_filter
from connectors.opcua.config import Deadband
from connectors.opcua.datavalue import Series, datetime_ns, quality_of, to_sample
from core.inputs import ConnectorStats
from core.sample import Quality, Sample
from tests.connectors.opcua.opcua_testplc import eventually

SERIES = Series("site", "line1", "filler", "speed")
TS = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
TS_NS = 1714979289_123456_000


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (ua.StatusCodes.Good, Quality.GOOD),
        (ua.StatusCodes.GoodClamped, Quality.GOOD),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (ua.StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
        (ua.StatusCodes.BadSensorFailure, Quality.BAD),
        (ua.StatusCodes.BadNodeIdUnknown, Quality.BAD),
        (0xC0000000, Quality.BAD),  # reserved severity 11 counts as bad
    ],
)
def test_quality_from_status_severity(code: int, quality: Quality) -> None:
    assert quality_of(ua.StatusCode(code)) is quality


def test_missing_status_is_good() -> None:
    assert quality_of(None) is Quality.GOOD


def test_naive_and_aware_utc_give_the_same_ns() -> None:
    assert datetime_ns(TS) == TS_NS
    assert datetime_ns(TS.replace(tzinfo=None)) == TS_NS


@pytest.mark.parametrize(
    ("value", "varianttype", "expected"),
    [
        (2.5, ua.VariantType.Double, 2.5),
        (2.5, ua.VariantType.Float, 2.5),
        (-7, ua.VariantType.Int16, -7.0),
        (4_000_000_000, ua.VariantType.UInt32, 4e9),
        (True, ua.VariantType.Boolean, 1.0),
        (False, ua.VariantType.Boolean, 0.0),
    ],
)
def test_numeric_values_become_floats(
    value: object, varianttype: ua.VariantType, expected: float
) -> None:
    sample, reason = to_sample(
        SERIES, ua.DataValue(ua.Variant(value, varianttype), SourceTimestamp=TS)
    )
    assert (sample.value, sample.quality, sample.source_ts, reason) == (
        expected,
        Quality.GOOD,
        TS_NS,
        None,
    )
    assert type(sample.value) is float
    assert (sample.site, sample.line, sample.machine, sample.signal) == (
        "site",
        "line1",
        "filler",
        "speed",
    )


@pytest.mark.parametrize(
    "variant",
    [
        ua.Variant("running", ua.VariantType.String),
        ua.Variant([1.0, 2.0], ua.VariantType.Double),
        ua.Variant(None, ua.VariantType.Null),
        ua.Variant(TS, ua.VariantType.DateTime),
    ],
)
def test_non_numeric_values_are_bad_with_a_reason(variant: ua.Variant) -> None:
    sample, reason = to_sample(SERIES, ua.DataValue(variant, SourceTimestamp=TS))
    assert sample.quality is Quality.BAD and math.isnan(sample.value)
    assert reason is not None and "not a number" in reason


def test_bad_status_carries_nan_and_uncertain_keeps_its_value() -> None:
    bad = ua.DataValue(ua.Variant(5.0), StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
    sample, reason = to_sample(SERIES, bad)
    assert math.isnan(sample.value) and sample.quality is Quality.BAD
    assert reason == "server reports BadSensorFailure"
    uncertain = ua.DataValue(
        ua.Variant(5.0), StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
    )
    sample, reason = to_sample(SERIES, uncertain)
    assert (sample.value, sample.quality, reason) == (5.0, Quality.UNCERTAIN, None)


def test_timestamp_falls_back_to_server_then_now() -> None:
    later = TS.replace(second=10)
    sample, _ = to_sample(SERIES, ua.DataValue(ua.Variant(1.0), ServerTimestamp=later))
    assert sample.source_ts == TS_NS + 1_000_000_000
    before = time.time_ns()
    sample, _ = to_sample(SERIES, ua.DataValue(ua.Variant(1.0)))
    assert before <= sample.source_ts <= time.time_ns()


def test_deadband_filters() -> None:
    assert deadband_filter(Deadband()) is None
    absolute = deadband_filter(Deadband(type="absolute", value=0.5))
    assert absolute is not None
    assert (absolute.DeadbandType, absolute.DeadbandValue) == (ua.DeadbandType.Absolute, 0.5)
    assert absolute.Trigger == ua.DataChangeTrigger.StatusValue
    percent = deadband_filter(Deadband(type="percent", value=2))
    assert percent is not None and percent.DeadbandType == ua.DeadbandType.Percent


class SlowPipeline:
    """An emit that blocks until released, to exercise backpressure."""

    def __init__(self) -> None:
        self.batches: list[Sequence[Sample]] = []
        self.release = asyncio.Event()

    async def emit(self, batch: Sequence[Sample]) -> None:
        await self.release.wait()
        self.batches.append(batch)


def _samples(n: int) -> list[Sample]:
    return [SERIES.sample(float(i), Quality.GOOD, i) for i in range(n)]


async def test_buffer_applies_backpressure_and_drops_nothing() -> None:
    pipeline = SlowPipeline()
    stats = ConnectorStats()
    buffer = SampleBuffer(pipeline.emit, stats, flush_interval_s=0.01, batch_size=10, limit=50)
    flusher = asyncio.create_task(buffer.run())
    try:
        await buffer.put(_samples(40))  # the flusher takes these and blocks in emit
        await asyncio.sleep(0.05)
        await buffer.put(_samples(49))  # below the limit: returns at once
        producer = asyncio.create_task(buffer.put(_samples(1)))  # reaches the limit: waits
        await asyncio.sleep(0.05)
        assert not producer.done()
        pipeline.release.set()
        async with asyncio.timeout(2):
            await producer
        await eventually(lambda: stats.samples == 90, within_s=2)
    finally:
        flusher.cancel()
        await asyncio.wait([flusher])
    assert sum(len(b) for b in pipeline.batches) == 90
    assert [s.source_ts for b in pipeline.batches for s in b] == [*range(40), *range(49), 0]


async def test_buffer_flushes_on_interval_and_on_request() -> None:
    pipeline = SlowPipeline()
    pipeline.release.set()
    buffer = SampleBuffer(pipeline.emit, ConnectorStats(), flush_interval_s=0.05, batch_size=1000)
    flusher = asyncio.create_task(buffer.run())
    try:
        await buffer.put(_samples(3))
        await asyncio.sleep(0.01)
        assert not pipeline.batches  # neither due nor full yet
        await buffer.put(_samples(2), flush=True)
        await asyncio.sleep(0.01)
        assert [len(b) for b in pipeline.batches] == [5]
        await buffer.put(_samples(1))
        await asyncio.sleep(0.1)
        assert [len(b) for b in pipeline.batches] == [5, 1]  # the interval flushed it
    finally:
        flusher.cancel()
        await asyncio.wait([flusher])


async def test_a_large_publish_response_lands_whole_in_the_buffer() -> None:
    """A PublishResponse of 2,000 items decoded and handled ten times: every notification a
    sample (its speed is measured in bench/bench_opcua.py, not here)."""
    n = 2000
    entry = {
        "type": "opcua",
        "name": "bench",
        "endpoint": "opc.tcp://127.0.0.1:4840",
        "tags": [{"machine": "m", "signal": f"s{i}", "node": f"ns=2;i={i}"} for i in range(n)],
    }
    source = build(Config.model_validate(entry), site="s", line="l")
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=i,
            Value=ua.DataValue(ua.Variant(float(i)), SourceTimestamp=TS, ServerTimestamp=TS),
        )
        for i in range(n)
    ]
    response = ua.PublishResponse()
    response.Parameters.NotificationMessage.NotificationData = [
        ua.DataChangeNotification(MonitoredItems=items)
    ]
    raw = struct_to_binary(response)
    emitted: list[int] = []

    async def emit(batch: Sequence[Sample]) -> None:
        emitted.append(len(batch))

    buffer = SampleBuffer(emit, source.stats, flush_interval_s=1.0, limit=10**9, batch_size=10**9)
    handler = _Notifications(source, buffer, _Loss())
    rounds = 10
    for _ in range(rounds):
        decoded = struct_from_binary(ua.PublishResponse, Buffer(raw))
        await handler.on_publish(decoded.Parameters)
    assert len(buffer) == rounds * n
