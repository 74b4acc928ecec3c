"""The writer with a spool: a bad record is isolated and the rest stored; a full spool's drop
count is exactly what the historian misses."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from historian import open_historian
from historian.sample import Quality, Sample
from historian.spool import Spool
from historian.sqlite import SQLiteHistorian
from historian.writer import HistorianWriter
from tests.eventually import eventually
from tests.historian.test_spool import samples


@pytest.mark.influxdb
async def test_a_bad_record_is_rejected_alone_and_the_good_ones_behind_it_stored(
    influx_db_url: str, tmp_path: Path
) -> None:
    bad = Sample("line1", "filler", "bad\nname", 1.0, Quality.GOOD, 5, "plant")
    batch = [*samples(500), bad, *samples(499, 500)]
    async with open_historian(influx_db_url) as historian:
        writer = HistorianWriter(historian, spool=Spool(tmp_path / "spool"), flush_interval_s=0.05)
        task = asyncio.create_task(writer.run())
        await writer.put(batch)
        await writer.put(samples(1000, 1000))
        await eventually(lambda: writer.stats.pending == 0, "the writes")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert writer.stats.rejected == 1
        assert writer.stats.retries == 0
        assert "bad\\nname" in writer.stats.last_error
        assert len(await historian.points("telemetry")) == 1999


async def test_a_full_spool_drops_exactly_what_the_historian_misses(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db), busy_timeout_ms=20) as historian:
        await historian.write_samples(samples(1, start=10**6))  # creates the schema
        blocker = sqlite3.connect(db)
        blocker.execute("BEGIN EXCLUSIVE")  # the historian is down
        spool = Spool(
            tmp_path / "spool", max_bytes=50_000, segment_bytes=8_000, commit_interval_s=0
        )
        writer = HistorianWriter(historian, spool=spool, retry_min_s=0.02, retry_max_s=0.05)
        task = asyncio.create_task(writer.run())
        for start in range(0, 30_000, 100):
            await writer.put(samples(100, start))
        assert spool.stats.dropped_samples > 0
        blocker.rollback()
        blocker.close()
        await eventually(lambda: writer.stats.pending == 0, "the writes")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stored = {p.ts for p in await historian.points("telemetry")} - {
            samples(1, 10**6)[0].source_ts
        }
    assert len(stored) + spool.stats.dropped_samples == 30_000
    assert len(stored) == writer.stats.samples_written
