"""The Modbus connector against a C server on libmodbus (a stack we did not write): values,
and what it says when a device is unreachable, drops the connection or answers exceptions."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from connectors.modbus import Config, ModbusInput, build, check
from core.sample import Quality
from testbed.influxd import free_port
from tests.connectors.opcua.opcua_testplc import Collector
from tests.eventually import eventually
from tests.second_stack import Running, libmodbus_server

pytestmark = pytest.mark.timeout(60)
TAGS = [
    {"signal": "count", "table": "holding", "address": 0, "type": "uint16"},
    {"signal": "level", "table": "holding", "address": 1, "type": "float32"},
    {"signal": "big", "table": "holding", "address": 3, "type": "uint32"},
    {"signal": "minus", "table": "holding", "address": 5, "type": "int16"},
]
EXPECTED = {"count": 1234.0, "level": 12.5, "big": 4000000001.0, "minus": -1.0}


def config(url: str, tags: list[dict[str, Any]] = TAGS, **overrides: Any) -> Config:
    return Config.model_validate(
        {
            "type": "modbus",
            "name": "meter",
            "url": url,
            "poll_interval_s": 0.1,
            "timeout_s": 1,
            "reconnect": {"min_s": 0.1, "max_s": 0.3},
            "devices": [{"unit": 1, "machine": "meter", "tags": tags}],
            **overrides,
        }
    )


async def running_for(source: ModbusInput, collector: Collector, until: Any) -> None:
    task = asyncio.create_task(source.run(collector.emit))
    try:
        await eventually(until, "the condition", timeout_s=15)
    finally:
        task.cancel()
        await asyncio.wait([task])


def ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The connector's warnings; pymodbus' own must not show at all."""
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")]
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_every_value_matches_a_second_stack(device: Running) -> None:
    source = build(config(device.url), site="s", line="l")
    collector = Collector()
    await running_for(source, collector, lambda: set(collector.latest()) == set(EXPECTED))
    latest = collector.latest()
    assert {s: latest[s].value for s in EXPECTED} == EXPECTED
    assert all(latest[s].quality is Quality.GOOD for s in EXPECTED)
    assert {t.signal: t.value for t in (await check(config(device.url))).tags} == EXPECTED


async def test_unreachable_device_is_logged_once_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = build(config(f"modbus://127.0.0.1:{free_port()}"), site="s", line="l")
    with caplog.at_level(logging.DEBUG):
        await running_for(source, Collector(), lambda: source.stats.errors >= 3)
    (line,) = ours(caplog)
    assert "connection refused: nothing listens on 127.0.0.1:" in line
    result = await check(config(f"modbus://127.0.0.1:{free_port()}"))
    assert all("connection refused: nothing listens" in t.problem for t in result.tags)


async def test_exception_answers_are_logged_once_per_burst(
    device: Running, caplog: pytest.LogCaptureFixture
) -> None:
    beyond = {"signal": "ghost", "table": "holding", "address": 20, "type": "uint16"}
    source = build(config(device.url, [beyond]), site="s", line="l")
    collector = Collector()
    with caplog.at_level(logging.DEBUG):
        await running_for(source, collector, lambda: source.stats.errors >= 5)
    (line,) = ours(caplog)
    assert "exception 2, illegal data address" in line
    assert all(s.quality is Quality.BAD for s in collector.samples)


async def test_a_dropped_connection_is_logged_and_recovered(
    binary: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    source = build(config(f"modbus://127.0.0.1:{port}"), site="s", line="l")
    collector = Collector()
    task = asyncio.create_task(source.run(collector.emit))
    try:
        with caplog.at_level(logging.INFO):
            with libmodbus_server(binary, port):
                await eventually(lambda: source.stats.connected, "connected", timeout_s=15)
            await eventually(lambda: not source.stats.connected, "the drop noticed", timeout_s=15)
            dropped = [m for m in ours(caplog) if "its tags are bad, reconnecting" in m]
            assert dropped, caplog.text
            with libmodbus_server(binary, port):
                await eventually(lambda: source.stats.connected, "connected", timeout_s=15)
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert source.stats.reconnects == 1
    assert "meter: connected to modbus://" in caplog.text


async def test_missing_pyserial_is_said_with_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ImportError):  # pyserial is an optional extra, not in the test install
        __import__("serial")
    source = build(config("modbus+serial:///dev/ttyUSB9"), site="s", line="l")
    with caplog.at_level(logging.DEBUG):
        await running_for(source, Collector(), lambda: source.stats.errors >= 2)
    (line,) = ours(caplog)
    assert "modbus+serial needs the pyserial package" in line
