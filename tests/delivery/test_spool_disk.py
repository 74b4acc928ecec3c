"""A spool on a real file system that fills up mid-run (a small tmpfs mounted by the test):
collection goes on in memory, bounded, with every drop counted, and the spool goes back to
disk when there is room again. Nothing is lost that is not counted."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.spool import Spool
from tests.delivery.test_spool import running, samples, take_all
from tests.eventually import eventually


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (the tests run as root, as bin/test does)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"this test needs to mount a small tmpfs (as root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of the disk: another program filling it."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


async def test_a_disk_that_fills_up_mid_run_goes_to_memory_and_back(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        filler = fill(disk, leave=200_000)
        spool = Spool(
            disk / "spool",
            segment_bytes=50_000,
            memory_samples=5_000,
            retry_min_s=0.05,
            retry_max_s=0.2,
        )
        put = 0
        async with running(spool):
            while not spool.stats.memory_only:
                assert put < 200_000, "the disk never filled up"
                await spool.put(samples(100, put))
                put += 100
            assert "No space left on device" in spool.stats.last_error
            for _ in range(100):  # the PLCs go on: 10,000 samples more, 5,000 fit in memory
                await spool.put(samples(100, put))
                put += 100
            dropped = spool.stats.dropped_samples
            assert dropped >= 5_000
            filler.unlink()  # room again
            await eventually(lambda: not spool.stats.memory_only, "the spool back on disk", 10)
            await spool.put(samples(100, put))
            put += 100
            taken = await take_all(spool)
        keys = [s.source_ts for s in taken.samples]
        assert len(keys) == len(set(keys)), "no sample twice"
        assert len(keys) + dropped == put, "every sample delivered or counted"
        async with running(Spool(disk / "spool")) as again:  # on disk, counters included
            assert again.stats.dropped_samples == dropped
            assert len((await take_all(again)).samples) == len(keys)
