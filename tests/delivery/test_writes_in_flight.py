"""Writes in flight: a historian that takes concurrent writes (InfluxDB) gets the next batch
while one is still being written, and the spool acknowledges batches only in order, so a batch
written later never releases one sent before it that is still being written or retried."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from core.sample import Sample
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian.influx_v1 import InfluxV1Historian
from historian.sqlite import SQLiteHistorian
from tests.delivery.test_writer import samples, stored
from tests.delivery.test_writer_keeps_pace import delivering
from tests.eventually import eventually

BATCH = 100


class FirstWriteHeld(SQLiteHistorian):
    """A real SQLite historian that takes two writes at once and holds the first one until
    `gate` opens (a slow or retried write), while later ones go straight in."""

    writes_in_flight = 2

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.calls = 0

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.gate.wait()
        await super().write_samples(samples)


def writer_for(historian: SQLiteHistorian, folder: Path) -> HistorianWriter:
    return HistorianWriter(
        historian,
        spool=Spool(folder),
        batch_size=BATCH,
        flush_interval_s=0.05,
        drain_timeout_s=0.3,
    )


def test_influxdb_takes_two_writes_at_once_and_sqlite_one() -> None:
    assert InfluxV1Historian.writes_in_flight == 2
    assert SQLiteHistorian.writes_in_flight == 1


async def test_a_later_write_done_first_does_not_release_an_earlier_one(tmp_path: Path) -> None:
    db, folder = tmp_path / "h.db", tmp_path / "spool"
    async with FirstWriteHeld(str(db)) as historian:
        writer = writer_for(historian, folder)
        async with delivering(writer):
            await writer.put(samples(BATCH))
            await writer.put(samples(BATCH, start=BATCH))
            await eventually(lambda: historian.calls == 2, "the second write while the first waits")
            await eventually(lambda: writer.stats.samples_written == BATCH, "the second batch in")
            # stored, yet still held: the batch before it is not in the historian
            assert writer.stats.pending == 2 * BATCH
        # stopped with the first write still held (the drain timed out): both wait on disk
    async with SQLiteHistorian(str(db)) as historian:
        writer = writer_for(historian, folder)
        async with delivering(writer):
            await eventually(
                lambda: writer.stats.samples_written == 2 * BATCH, "the replay of both batches"
            )
    assert await stored(db) == 2 * BATCH


async def test_once_the_held_write_goes_in_both_are_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with FirstWriteHeld(str(db)) as historian:
        writer = writer_for(historian, tmp_path / "spool")
        async with delivering(writer):
            await writer.put(samples(BATCH))
            await writer.put(samples(BATCH, start=BATCH))
            await eventually(lambda: writer.stats.samples_written == BATCH, "the second batch in")
            historian.gate.set()
            await eventually(lambda: writer.stats.pending == 0, "both acknowledged")
        assert historian.calls == 2
    assert await stored(db) == 2 * BATCH
