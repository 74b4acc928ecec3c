"""A durable spool and a historian that takes writes more slowly than the inputs hand them over:
the writer pushes back on `put` instead of letting the backlog grow; during an outage it does
not, and the spool buffers. A reader waiting for records is never left waiting while some are
there."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from core.sample import Sample
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian.sqlite import SQLiteHistorian
from tests.delivery.test_spool import running
from tests.delivery.test_writer import samples
from tests.eventually import eventually


class GatedHistorian(SQLiteHistorian):
    """A real SQLite historian whose writes wait for `gate` (a historian that is behind)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.waiting = False

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        self.waiting = True
        await self.gate.wait()
        await super().write_samples(samples)


@contextlib.asynccontextmanager
async def delivering(writer: HistorianWriter) -> AsyncIterator[HistorianWriter]:
    """The writer running for the block, stopped (it drains) at the end."""
    async with asyncio.TaskGroup() as group:
        run = group.create_task(writer.run())
        yield writer
        run.cancel()


@contextlib.contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another connection holds the database: every write fails (an outage) until the end."""
    blocker = sqlite3.connect(db)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


async def test_a_put_waits_while_the_historian_is_behind(tmp_path: Path) -> None:
    async with GatedHistorian(str(tmp_path / "h.db")) as historian:
        spool = Spool(tmp_path / "spool")
        writer = HistorianWriter(historian, spool=spool, flush_interval_s=0.01, max_pending=1000)
        async with delivering(writer):
            for start in range(0, 900, 300):
                await writer.put(samples(300, start))  # 900 pending: no wait
            await eventually(lambda: historian.waiting, "the writer to be writing")
            fourth = asyncio.create_task(writer.put(samples(300, 900)))
            await eventually(lambda: writer.stats.pending == 1200, "the batch in the spool")
            await asyncio.sleep(0.2)
            assert not fourth.done(), "past max_pending a put waits for the historian"
            historian.gate.set()
            await asyncio.wait_for(fourth, 10)
            assert writer.stats.pending <= 1000
            await eventually(lambda: not writer.stats.pending, "everything stored")
        assert writer.stats.samples_written == 1200


async def test_during_an_outage_puts_do_not_wait(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with SQLiteHistorian(str(db), busy_timeout_ms=50) as historian:
        await historian.write_samples(samples(1))  # creates the schema
        spool = Spool(tmp_path / "spool")
        writer = HistorianWriter(
            historian, spool=spool, flush_interval_s=0.01, retry_min_s=0.05, max_pending=500
        )
        async with delivering(writer):
            with locked(db):
                async with asyncio.timeout(10):
                    for start in range(1, 3001, 300):
                        await writer.put(samples(300, start))
                assert writer.stats.pending == 3000 and writer.stats.samples_written == 0
            await eventually(lambda: not writer.stats.pending, "everything stored after it")
    assert writer.stats.samples_written == 3000


async def test_a_reader_is_not_left_waiting_while_records_are_there(tmp_path: Path) -> None:
    async with running(Spool(tmp_path / "spool")) as spool:
        for start in range(0, 300, 100):
            await spool.put(samples(100, start))
        first = await spool.take(100)
        assert len(first.samples) == 100
        await asyncio.wait_for(spool.arrival(), 5)  # two records are still to be read
        rest = await spool.take(1000)
        assert len(rest.samples) == 200
