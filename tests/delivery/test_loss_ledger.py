"""The loss ledger with exact counts: what reaches the historian plus what the spool counted
lost is what was produced, also across a restart. Damaged record headers in a stopped spool,
a spool folder that turns read-only (a real tmpfs remounted read-only) and a small disk (a
3 MB tmpfs) with the historian keeping up."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from core.sample import Point, Sample
from core.schema import CONNECTOR
from delivery import spool_format as fmt
from delivery.ledger import remember_losses
from delivery.spool import Spool
from historian.sqlite import SQLiteHistorian
from tests.delivery.test_spool import running, samples, take_all
from tests.delivery.test_spool_damage import flip, layout
from tests.delivery.test_spool_disk import small_disk

PER_RECORD = 100


async def fill(folder: Path, records: int) -> list[list[Sample]]:
    batches = [samples(PER_RECORD, i * PER_RECORD) for i in range(records)]
    async with running(Spool(folder, segment_bytes=40_000)) as spool:
        for batch in batches:
            await spool.put(batch)
    return batches


@pytest.mark.parametrize("seed", range(8))
async def test_damaged_record_headers_in_a_stopped_spool_are_counted_exactly(
    tmp_path: Path, seed: int
) -> None:
    folder = tmp_path / "spool"
    produced = await fill(folder, 40)
    records = layout(folder)
    rng = random.Random(seed)
    hit = rng.sample(range(len(records)), 3)
    for index in hit:  # one byte of the header: marker, counts, length or its CRC
        path, span = records[index]
        flip(path, span.start + rng.randrange(fmt.RECORD_HEADER_SIZE))

    async with running(Spool(folder)) as spool:
        delivered = await take_all(spool)
        spool.ack(delivered)
    assert len(delivered.samples) + spool.stats.dropped_samples == PER_RECORD * len(produced)
    assert spool.stats.unreadable_samples == spool.stats.dropped_samples == 3 * PER_RECORD
    assert spool.stats.unknown_loss_bytes == 0

    async with running(Spool(folder)) as again:  # after a restart: counted once, not again
        assert again.stats.dropped_samples == 3 * PER_RECORD


async def test_a_record_damaged_beyond_inference_is_unknown_samples_in_its_bytes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "spool"
    produced = await fill(folder, 10)
    path, span = layout(folder)[4]
    flip(path, span.start + 2)  # the marker
    flip(path, span.start + fmt.RECORD_HEADER_SIZE + 5)  # and the payload

    async with running(Spool(folder)) as spool:
        delivered = await take_all(spool)
        spool.ack(delivered)
        stats = spool.stats
    assert len(delivered.samples) == PER_RECORD * (len(produced) - 1)
    assert stats.unknown_loss_bytes == span.end - span.start
    assert stats.dropped_samples == 0  # how many it held is not known: not made up either
    assert f"unknown samples in {span.end - span.start} bytes" in stats.last_error
    async with running(Spool(folder)) as again:
        assert again.stats.unknown_loss_bytes == span.end - span.start


def immutable(folder: Path, on: bool) -> None:
    """Turn the folder read-only (or back) the way root feels it: the immutable attribute."""
    subprocess.run(["chattr", "+i" if on else "-i", str(folder)], check=True)


def stored_samples(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])


async def deliver(spool: Spool, historian: SQLiteHistorian) -> None:
    batch = await take_all(spool)
    await historian.write_samples(batch.samples)
    spool.ack(batch)


async def test_drops_survive_a_read_only_spool_folder_and_a_restart(tmp_path: Path) -> None:
    db, folder = tmp_path / "historian.db", tmp_path / "spool"
    produced = 0
    async with SQLiteHistorian(str(db)) as historian:
        spool = Spool(
            folder, memory_fallback=True, memory_samples=1_000, retry_min_s=30, retry_max_s=30
        )
        try:
            async with running(spool):
                for _ in range(10):
                    await spool.put(samples(PER_RECORD, produced))
                    produced += PER_RECORD
                await deliver(spool, historian)
                immutable(folder, True)  # the folder turns read-only while running
                for _ in range(30):
                    await spool.put(samples(PER_RECORD, produced))
                    produced += PER_RECORD
                assert spool.stats.memory_only
                await deliver(spool, historian)
                dropped = spool.stats.dropped_samples
                # the first batch after the change reached the disk (saving the state then
                # failed); of the 2,900 after it, the memory holds the newest 1,000
                assert dropped == 1_900
                # what the agent writes every 10 s: the spool's counters in a connector point
                health = {"spool_dropped": dropped, "spool_unreadable_bytes": 0}
                point = Point(CONNECTOR.name, {"connector": "plc"}, health, time.time_ns())
                await historian.write_points([point])
            assert stored_samples(db) + dropped == produced

            again = Spool(folder, memory_fallback=True)  # a restart, the folder still read-only
            async with running(again):
                assert again.stats.memory_only and again.stats.dropped_samples == 0
                await remember_losses(again.stats, historian, ["plc"])
                assert again.stats.dropped_samples == dropped
        finally:
            immutable(folder, False)

        third = Spool(folder)  # the folder is back: the count still does not return to 0
        async with running(third):
            await remember_losses(third.stats, historian, ["plc"])
            await deliver(third, historian)
            assert stored_samples(db) + third.stats.dropped_samples == produced
        async with running(Spool(folder)) as fourth:  # and now state.json has it too
            assert fourth.stats.dropped_samples == dropped


async def test_a_spool_on_a_small_disk_releases_delivered_data_early(tmp_path: Path) -> None:
    """A 3 MB disk, the default 1 GB spool (8 MB segments), 6 MB going through while the
    historian keeps up: delivered data leaves the disk long before a segment is full."""
    db = tmp_path / "historian.db"
    produced = 0
    with small_disk(tmp_path / "disk", "3m") as disk:
        async with SQLiteHistorian(str(db)) as historian, running(Spool(disk / "spool")) as spool:
            for _ in range(150):
                await spool.put(samples(1_000, produced))
                produced += 1_000
                await deliver(spool, historian)
                assert not spool.stats.memory_only, spool.stats.last_error
            on_disk = sum(p.stat().st_size for p in (disk / "spool").glob("*.seg"))
    assert stored_samples(db) == produced
    assert spool.stats.dropped_samples == 0
    assert on_disk < 2 << 20
