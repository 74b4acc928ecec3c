"""Plant data files are the owner's only, whatever the umask: the SQLite historian's database
with its WAL files, and the Sparkplug host's births file, are created 0600 (like the spool)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.sample import Quality, Sample
from historian.sqlite import SQLiteHistorian
from uns import sparkplug


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The usual umask 022, which would give 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_historian_and_its_wal_are_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "plant.db"
    sample = Sample("line1", "filler", "speed", 1.0, Quality.GOOD, time.time_ns(), "plant")
    async with SQLiteHistorian(str(path)) as historian:
        await historian.write_samples([sample])
        modes = await asyncio.to_thread(lambda: {p.name: mode(p) for p in tmp_path.iterdir()})
    assert set(modes) >= {"plant.db", "plant.db-wal", "plant.db-shm"}
    assert modes == dict.fromkeys(modes, 0o600)


def test_the_sparkplug_births_file_is_created_0600(tmp_path: Path) -> None:
    births = tmp_path / "sparkplug-births.json"
    edge = sparkplug.EdgeNode("g", "n")
    edge.new_session()
    sample = Sample("line1", "filler", "speed", 1.0, Quality.GOOD, time.time_ns(), "plant")
    dbirth = next(m for m in edge.data([sample]) if "/DBIRTH/" in m[0])
    host = sparkplug.Host(births)
    host.learn("g", "n", "filler", dbirth[1])
    assert births.exists() and mode(births) == 0o600
