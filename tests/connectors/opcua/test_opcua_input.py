"""OpcUaInput against a real asyncua server over a real socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import math
from base64 import b64encode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from asyncua import ua

from connectors.opcua import Config, OpcUaInput, build
from core.sample import Quality
from tests.connectors.opcua.opcua_testplc import (
    LABEL_BYTES,
    NAMESPACE_URI,
    RUNNING_GUID,
    SOURCE_TS,
    SOURCE_TS_NS,
    Collector,
    TestPlc,
    eventually,
)

TAGS = [
    {"machine": "pasteurizer", "signal": "temp", "node": "ns=2;s=line1.temp"},
    {"machine": "filler", "signal": "count", "node": f"nsu={NAMESPACE_URI};i=1234"},
    {"machine": "filler", "signal": "running", "node": f"ns=2;g={RUNNING_GUID}"},
    {"machine": "capper", "signal": "label", "node": f"ns=2;b={b64encode(LABEL_BYTES).decode()}"},
    {"machine": "capper", "signal": "broken", "node": "ns=2;s=line1.broken", "line": "line9"},
    {"machine": "capper", "signal": "speed", "node": "/Objects/2:line1/2:speed"},
    {"machine": "ghost", "signal": "missing", "node": "ns=2;s=no.such.node"},
    {"machine": "ghost", "signal": "nowhere", "node": "/Objects/2:line1/2:nothing"},
]
READABLE = ["temp", "count", "running", "speed"]
ALL = [tag["signal"] for tag in TAGS]
NUMBERS = [signal for signal in ALL if signal != "label"]  # a String: a text reading
EXPECTED: dict[str, tuple[float, Quality]] = {
    "temp": (72.25, Quality.GOOD),
    "count": (42.0, Quality.GOOD),
    "running": (1.0, Quality.GOOD),
    "speed": (3.5, Quality.GOOD),
    "broken": (math.nan, Quality.BAD),  # BadSensorFailure
    "missing": (math.nan, Quality.BAD),  # BadNodeIdUnknown
    "nowhere": (math.nan, Quality.BAD),  # browse path to nothing
}


def make_input(endpoint: str, mode: str, **overrides: Any) -> OpcUaInput:
    entry = {
        "type": "opcua",
        "name": "test-plc",
        "endpoint": endpoint,
        "mode": mode,
        "publishing_interval_ms": 50,
        "sampling_interval_ms": 25,
        "poll_interval_s": 0.1,
        "timeout_s": 2,
        "reconnect": {"min_s": 0.1, "max_s": 0.3},
        "tags": TAGS,
        **overrides,
    }
    return build(Config.model_validate(entry), site="testsite", line="line1")


@asynccontextmanager
async def running(source: OpcUaInput, collector: Collector) -> AsyncIterator[asyncio.Task[None]]:
    source.emit_points = collector.emit_points  # what the agent does
    task = asyncio.create_task(source.run(collector.emit))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
        assert task.done(), "run() did not finish after cancel"


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_every_tag_arrives_with_value_quality_and_source_time(
    plc: TestPlc, collector: Collector, mode: str
) -> None:
    source = make_input(plc.endpoint, mode)
    async with running(source, collector):
        await collector.wait_for(
            lambda: set(collector.latest()) == set(NUMBERS) and collector.points
        )
        assert source.stats.connected

    latest = collector.latest()
    for signal, (value, quality) in EXPECTED.items():
        sample = latest[signal]
        assert sample.quality is quality, signal
        assert (math.isnan(sample.value) and math.isnan(value)) or sample.value == value, signal
        assert sample.site == "testsite"
    for signal in [*READABLE, "broken"]:
        assert latest[signal].source_ts == SOURCE_TS_NS, signal
    assert latest["broken"].line == "line9"
    assert latest["temp"].line == "line1"
    label = collector.points[-1]
    assert (label.tags["signal"], dict(label.fields)) == ("label", {"quality": 0, "text": "hello"})
    assert label.ts == SOURCE_TS_NS
    assert source.stats.samples == len(collector.samples) + len(collector.points)
    assert source.stats.errors == 3  # broken, missing, nowhere: once each


async def test_subscription_delivers_changes(plc: TestPlc, collector: Collector) -> None:
    source = make_input(plc.endpoint, "subscribe")
    async with running(source, collector):
        await collector.wait_for(lambda: collector.good_since(0, READABLE))
        before = len(collector.samples)
        await plc.write(plc.nodes["temp"], 80.5, ua.VariantType.Double, source_ts=_ts(1))
        await plc.write(plc.nodes["count"], 43, ua.VariantType.Int32, source_ts=_ts(2))

        def changed() -> bool:
            latest = collector.latest(before)
            return "temp" in latest and "count" in latest

        await collector.wait_for(changed)
    latest = collector.latest(before)
    assert (latest["temp"].value, latest["temp"].source_ts) == (80.5, SOURCE_TS_NS + 1_000_000_000)
    assert (latest["count"].value, latest["count"].source_ts) == (
        43.0,
        SOURCE_TS_NS + 2_000_000_000,
    )


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_server_restart_marks_bad_then_reconnects(
    plc: TestPlc, collector: Collector, mode: str
) -> None:
    source = make_input(plc.endpoint, mode)
    async with running(source, collector):
        await collector.wait_for(lambda: collector.good_since(0, READABLE))
        stopped_at = len(collector.samples)
        await plc.stop()
        await collector.wait_for(lambda: collector.all_bad_since(stopped_at, ALL))
        assert not source.stats.connected
        assert source.stats.errors >= 1

        restarted_at = len(collector.samples)
        await plc.start()  # same port, a new server: new session and subscriptions needed
        await collector.wait_for(lambda: collector.good_since(restarted_at, READABLE))
        assert source.stats.connected
        assert source.stats.reconnects == 1
    assert collector.latest(restarted_at)["temp"].value == 72.25


async def test_refused_subscriptions_fall_back_to_polling(
    plc: TestPlc, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    assert plc.server is not None
    plc.server.iserver.max_subscriptions = 1  # the 2nd subscription gets BadTooManySubscriptions
    source = make_input(plc.endpoint, "subscribe", max_items_per_subscription=2)
    with caplog.at_level(logging.WARNING, logger="connectors.opcua"):
        async with running(source, collector):
            await collector.wait_for(lambda: set(collector.latest()) == set(NUMBERS))
            await collector.wait_for(lambda: len(collector.samples) > 3 * len(NUMBERS))
    latest = collector.latest()
    for signal in READABLE:
        assert (latest[signal].value, latest[signal].quality) == EXPECTED[signal]
    assert "BadTooManySubscriptions" in caplog.text
    assert "polling" in caplog.text


async def test_unreachable_server_marks_bad_once_and_keeps_trying(collector: Collector) -> None:
    source = make_input("opc.tcp://127.0.0.1:9/nothing", "subscribe", timeout_s=0.5)
    async with running(source, collector):
        await eventually(lambda: source.stats.errors >= 3)
    assert not source.stats.connected
    assert len(collector.samples) == len(ALL)  # one BAD per tag, not one per attempt
    assert collector.all_bad_since(0, ALL)
    assert source.stats.last_error


async def test_cancel_leaves_no_task_or_session(plc: TestPlc, collector: Collector) -> None:
    tasks_before = asyncio.all_tasks()
    source = make_input(plc.endpoint, "subscribe")
    async with running(source, collector):
        await collector.wait_for(lambda: collector.good_since(0, READABLE))
        assert plc.open_connections() == 1
        assert plc.server is not None
        assert len(plc.server.iserver._external_sessions) == 1

    await eventually(lambda: not plc.open_connections() and asyncio.all_tasks() <= tasks_before)
    assert plc.server is not None
    assert not plc.server.iserver._external_sessions  # the client closed its session


def _ts(seconds: int) -> datetime:
    return SOURCE_TS + timedelta(seconds=seconds)
