"""The writer between connectors and historian: batching, retry, rejection, backpressure, drain."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from core.sample import Point, Quality, Sample
from delivery.writer import HistorianWriter
from historian.influx_v1 import InfluxV1Historian
from historian.sqlite import SQLiteHistorian
from tests.eventually import eventually

T0 = 1_700_000_000_000_000_000


def samples(count: int, start: int = 0) -> list[Sample]:
    return [
        Sample("line1", "filler", "speed_hz", float(i), Quality.GOOD, T0 + i * 1000)
        for i in range(start, start + count)
    ]


async def stored(path: Path) -> int:
    async with SQLiteHistorian(str(path)) as reader:
        return len(await reader.points("telemetry"))


async def test_batches_everything_handed_over(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db)) as historian:
        writer = HistorianWriter(historian, batch_size=1000, flush_interval_s=0.05)
        task = asyncio.create_task(writer.run())
        for start in range(0, 12_000, 300):
            await writer.put(samples(300, start))
        await writer.put_points(
            [
                Point(
                    "events",
                    {"machine": "filler", "kind": "fault"},
                    {"text": "jam", "active": True},
                    T0,
                )
            ]
        )
        await eventually(lambda: not writer.stats.pending, "the writer to store everything")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert writer.stats.samples_written == 12_000
        assert len(await historian.points("events")) == 1
    assert await stored(db) == 12_000


async def test_a_locked_historian_is_retried_until_it_takes_the_batch(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db), busy_timeout_ms=50) as historian:
        await historian.write_samples(samples(1))  # creates the schema
        blocker = sqlite3.connect(db)
        blocker.execute("BEGIN EXCLUSIVE")
        writer = HistorianWriter(historian, flush_interval_s=0.01, retry_min_s=0.05)
        task = asyncio.create_task(writer.run())
        await writer.put(samples(100, start=1))
        await eventually(lambda: writer.stats.retries >= 2, "two retries")
        assert writer.stats.samples_written == 0
        blocker.rollback()
        blocker.close()
        await eventually(lambda: not writer.stats.pending, "the writer to store everything")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await stored(db) == 101
    assert writer.stats.rejected == 0


@pytest.mark.influxdb
async def test_a_historian_set_up_wrong_keeps_the_data_until_it_is_fixed(
    influxdb_url: str,
) -> None:
    """An unknown database (or a bad token) fails every record alike: nothing is rejected, the
    writer retries and says why, and once the database exists everything is stored."""
    server = influxdb_url.replace("influxdb://", "http://").rsplit("/", 1)[0]
    database = f"created_later_{uuid.uuid4().hex[:8]}"
    historian = InfluxV1Historian(
        server, database, username=None, password=None, create_database=False
    )
    async with historian:
        writer = HistorianWriter(
            historian, flush_interval_s=0.01, retry_min_s=0.05, retry_max_s=0.2
        )
        task = asyncio.create_task(writer.run())
        await writer.put(samples(10))
        await eventually(lambda: writer.stats.retries >= 2, "the writer to retry")
        assert writer.stats.rejected == 0 and writer.stats.pending == 10
        assert database in writer.stats.last_error
        async with InfluxV1Historian(server, database, username=None, password=None) as fixer:
            await fixer.write_samples(samples(1, start=10**6))  # creates the database
        await eventually(lambda: not writer.stats.pending, "the writer to store everything")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stored = await historian.points("telemetry")
    assert writer.stats.rejected == 0
    assert len(stored) == 11


async def test_a_stalled_historian_pushes_back_instead_of_growing_memory(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db), busy_timeout_ms=20) as historian:
        await historian.write_samples(samples(1))
        blocker = sqlite3.connect(db)
        blocker.execute("BEGIN EXCLUSIVE")
        writer = HistorianWriter(historian, batch_size=100, max_pending=300, retry_min_s=0.02)
        task = asyncio.create_task(writer.run())
        producer = asyncio.create_task(_fill(writer, 20))
        await asyncio.sleep(0.5)
        assert not producer.done(), "put() must wait while the historian cannot take data"
        assert writer.stats.pending <= 300 + 100 + 100
        blocker.rollback()
        blocker.close()
        await asyncio.wait_for(producer, 10)
        await eventually(lambda: not writer.stats.pending, "the writer to store everything")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await stored(db) == 1 + 20 * 100


async def _fill(writer: HistorianWriter, batches: int) -> None:
    for n in range(batches):
        await writer.put(samples(100, start=1 + n * 100))


async def test_cancelling_writes_what_is_queued_first(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db)) as historian:
        writer = HistorianWriter(historian, flush_interval_s=60)
        task = asyncio.create_task(writer.run())
        await writer.put(samples(500))
        await writer.put(samples(500, start=500))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await stored(db) == 1000
