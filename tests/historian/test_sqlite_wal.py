"""SQLite: a second process (here: a second connection) reads while the writer writes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from historian import HistorianError, Quality, Sample
from historian.sqlite import SQLiteHistorian


async def test_reader_sees_progress_while_writer_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "h.db")
    batches = 40

    async def write(store: SQLiteHistorian) -> None:
        for b in range(batches):
            await store.write_samples(
                [Sample("l", "m", f"s{i}", float(b), Quality.GOOD, b * 100 + i) for i in range(50)]
            )
            await asyncio.sleep(0)

    async def read(store: SQLiteHistorian, done: asyncio.Event) -> list[int]:
        seen = []
        while not done.is_set():
            seen.append(len(await store.points("telemetry")))
        return seen

    async with SQLiteHistorian(path) as writer, SQLiteHistorian(path) as reader:
        await writer.write_samples([])  # nothing to write: no file yet
        await reader.latest()  # creates the schema
        done = asyncio.Event()
        reading = asyncio.create_task(read(reader, done))
        await write(writer)
        done.set()
        seen = await reading
    assert seen == sorted(seen) and len(set(seen)) > 2, seen
    assert all(n % 50 == 0 for n in seen)  # a batch is visible whole or not at all
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (batches * 50,)


async def test_unwritable_path_is_a_historian_error(tmp_path: Path) -> None:
    async with SQLiteHistorian(str(tmp_path / "missing" / "h.db")) as store:
        with pytest.raises(HistorianError, match="unable to open database file"):
            await store.latest()
