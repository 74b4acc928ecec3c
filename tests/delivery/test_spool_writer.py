"""The writer with a spool: a bad record is isolated and the rest stored; a full spool's drop
count is exactly what the historian misses."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from core.sample import Quality, Sample
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import open_historian
from historian.sqlite import SQLiteHistorian
from tests.delivery.test_spool import samples
from tests.delivery.test_spool_damage import flip, layout
from tests.eventually import eventually


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


async def test_records_damaged_while_the_writer_runs_are_skipped_counted_and_it_goes_on(
    tmp_path: Path,
) -> None:
    """The historian locked, so the spool fills; two records ahead of the reader are damaged
    on disk (a payload byte, a header byte). Once the historian is back everything else is
    stored, the two are counted, and the writer is still running and taking data."""
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db), busy_timeout_ms=50) as historian:
        await historian.write_samples(samples(1, 100_000))  # creates the schema
        blocker = sqlite3.connect(db)
        blocker.execute("BEGIN EXCLUSIVE")
        writer = HistorianWriter(
            historian,
            spool=Spool(tmp_path / "spool"),
            batch_size=100,
            flush_interval_s=0.01,
            retry_min_s=0.05,
            retry_max_s=0.1,
        )
        task = asyncio.create_task(writer.run())
        for start in range(0, 2000, 100):
            await writer.put(samples(100, start))
        await eventually(lambda: writer.stats.retries >= 1, "a failed write")
        records = layout(tmp_path / "spool")
        path, payload_hit = records[10]
        flip(path, payload_hit.end - 3)
        flip(path, records[15][1].start + 2)
        blocker.rollback()
        blocker.close()
        await eventually(lambda: writer.stats.spool.samples == 0, "the rest delivered")
        await writer.put(samples(100, 5000))
        await eventually(lambda: writer.stats.samples_written == 1900, "new data stored")
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert writer.stats.spool.dropped_samples == 200
    async with SQLiteHistorian(str(db)) as reader:
        assert len(await reader.points("telemetry")) == 1 + 1800 + 100
