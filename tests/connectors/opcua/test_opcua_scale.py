"""Plant scale against node-opcua: the tags are split over calls, subscriptions and sessions
within the limits the server announces. The server enforces them (a request past one is refused
whole, and the connector would then fall back to polling and say so), so every tag delivering
every change through subscriptions, without a warning, shows the split was right.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from connectors.opcua import Config, OpcUaInput, build
from core.sample import Quality, Sample
from tests.second_stack import Running, node_opcua_scale_server

pytestmark = pytest.mark.timeout(90)
SIGNALS_PER_MACHINE = 100
CHANGES = 3  # whole seconds in a row every tag must deliver
# 2 subscriptions of 100 items per session, 50 per call: 500 tags need 3 sessions, 10 calls.
SMALL_LIMITS = {
    "MAX_MONITORED_ITEMS_PER_CALL": "50",
    "MAX_MONITORED_ITEMS_PER_SUBSCRIPTION": "100",
    "MAX_SUBSCRIPTIONS_PER_SESSION": "2",
}


@pytest.fixture
def small_limits(tmp_path: Path) -> Iterator[Running]:
    with node_opcua_scale_server(tmp_path, 500, SMALL_LIMITS) as server:
        yield server


@pytest.fixture
def no_capabilities(tmp_path: Path) -> Iterator[Running]:
    with node_opcua_scale_server(tmp_path, 300, {"NO_CAPABILITIES": "1"}) as server:
        yield server


def series_of(index: int) -> tuple[str, str]:
    return f"m{index // SIGNALS_PER_MACHINE}", f"v{index % SIGNALS_PER_MACHINE}"


def scale_input(server: Running, items: int) -> OpcUaInput:
    tags = [
        {"machine": m, "signal": s, "node": f"ns=1;s=v{i}"}
        for i, (m, s) in enumerate(map(series_of, range(items)))
    ]
    entry = {
        "type": "opcua",
        "name": "scale",
        "endpoint": server.endpoint,
        "security": "none",
        "publishing_interval_ms": 200,
        "sampling_interval_ms": 0,
        "timeout_s": 5,
        "tags": tags,
    }
    return build(Config.model_validate(entry), site="s", line="l")


class Seconds:
    """The emit: per series, the whole seconds its good samples were stamped with."""

    def __init__(self) -> None:
        self.stamps: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.bad = 0
        self.event = asyncio.Event()

    async def emit(self, samples: Sequence[Sample]) -> None:
        for sample in samples:
            if sample.quality is Quality.BAD:
                self.bad += 1
            else:
                self.stamps[sample.machine, sample.signal].add(sample.source_ts // 10**9)
        self.event.set()

    def runs(self) -> dict[tuple[str, str], int]:
        """Per series, the longest run of consecutive seconds delivered."""
        longest = {}
        for key, seconds in self.stamps.items():
            best = run = 0
            for second in sorted(seconds):
                run = run + 1 if second - 1 in seconds else 1
                best = max(best, run)
            longest[key] = best
        return longest


async def collect(source: OpcUaInput, items: int) -> Seconds:
    """Run `source` until every series has delivered CHANGES seconds in a row (or 60 s)."""
    seconds = Seconds()
    task = asyncio.create_task(source.run(seconds.emit))
    try:
        async with asyncio.timeout(60):
            while len(seconds.stamps) < items or min(seconds.runs().values()) < CHANGES:
                seconds.event.clear()
                await seconds.event.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return seconds


def connector_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("connectors.opcua") and r.levelno >= logging.WARNING
    ]


async def test_small_limits_split_over_calls_subscriptions_and_sessions(
    small_limits: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = scale_input(small_limits, 500)
    seconds = await collect(source, 500)
    assert set(seconds.stamps) == {series_of(i) for i in range(500)}
    assert seconds.bad == 0
    assert connector_warnings(caplog) == []  # nothing refused, nothing polled
    sessions = [r for r in caplog.records if "connected to" in r.getMessage()]
    assert len(sessions) == 3  # 500 tags / (2 subscriptions x 100 items) per session
    assert source.stats.errors == 0


async def test_a_server_without_capabilities_gets_safe_defaults(
    no_capabilities: Running, caplog: pytest.LogCaptureFixture
) -> None:
    seconds = await collect(scale_input(no_capabilities, 300), 300)
    assert set(seconds.stamps) == {series_of(i) for i in range(300)}
    assert seconds.bad == 0
    assert connector_warnings(caplog) == []
