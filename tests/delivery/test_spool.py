"""The durable spool on its own: records survive, replay after a restart, torn tails are cut,
the size bound drops whole segments and counts them, an unusable folder is a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.sample import Point, Quality, Sample
from delivery.spool import Batch, Spool, SpoolError, parse_size

T0 = 1_700_000_000_000_000_000


def samples(count: int, start: int = 0, machine: str = "filler") -> list[Sample]:
    return [
        Sample("line1", machine, f"s{i % 7}", float(i), Quality.GOOD, T0 + i, "plant")
        for i in range(start, start + count)
    ]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """A folder nobody may write to: mode 0555, and for root (whom modes do not stop) the
    immutable attribute as well."""
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@contextlib.asynccontextmanager
async def running(spool: Spool) -> AsyncIterator[Spool]:
    """The spool with its committer, closed afterwards like the writer closes it."""
    await spool.open()
    task = asyncio.create_task(spool.run())
    try:
        yield spool
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await spool.close()


async def take_all(spool: Spool) -> Batch:
    batch = Batch()
    while more := await spool.take(1000):
        if not (more.samples or more.points):
            break
        batch.extend(more)
    return batch


async def test_records_come_back_as_they_went_in(tmp_path: Path) -> None:
    odd = [
        Sample("l", "m", "temp_c", math.nan, Quality.BAD, T0, "s"),
        Sample("l", "m,x", 'q=1 "', 1e300, Quality.UNCERTAIN, T0 + 1, "s"),
    ]
    health = Point("connector", {"connector": "c", "endpoint": "e"}, {"samples": 3, "ok": 1.0}, 5)
    async with running(Spool(tmp_path / "spool")) as spool:
        await spool.put(odd + samples(10))
        await spool.put((), [health])
        batch = await take_all(spool)
    assert batch.samples[2:] == samples(10)
    assert math.isnan(batch.samples[0].value) and batch.samples[0].quality == Quality.BAD
    assert batch.samples[1] == odd[1]
    assert batch.points == [health]
    assert isinstance(batch.points[0].fields["ok"], float)


async def test_what_is_not_acknowledged_is_replayed_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    async with running(Spool(folder)) as spool:
        for start in range(0, 3000, 100):
            await spool.put(samples(100, start))
        first = await spool.take(1000)
        spool.ack(first)
        await spool.take(500)  # read, never acknowledged: the historian did not take it
    async with running(Spool(folder)) as spool:
        assert spool.stats.samples == 2000
        again = await take_all(spool)
    assert again.samples == samples(2000, 1000)


async def test_a_torn_tail_is_cut_and_the_records_before_it_kept(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    async with running(Spool(folder)) as spool:
        for start in range(0, 500, 100):
            await spool.put(samples(100, start))
    segment = max(folder.glob("*.seg"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-10])  # power lost while the last record was being written
    async with running(Spool(folder)) as spool:
        assert (await take_all(spool)).samples == samples(400)
    assert segment.stat().st_size < len(data) - 10


async def test_a_full_spool_drops_the_oldest_segments_and_counts_every_sample(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "spool"
    async with running(
        Spool(folder, max_bytes=60_000, segment_bytes=10_000, commit_interval_s=0)
    ) as spool:
        for start in range(0, 20_000, 100):
            await spool.put(samples(100, start))
        kept = await take_all(spool)
        dropped = spool.stats.dropped_samples
        assert spool.stats.bytes <= 60_000 + 10_000
    assert dropped > 0
    assert len(kept.samples) + dropped == 20_000
    # what was dropped is the oldest: what is kept is the newest, in order
    assert kept.samples == samples(len(kept.samples), 20_000 - len(kept.samples))
    async with running(Spool(folder)) as spool:
        assert spool.stats.dropped_samples == dropped  # the counter survives a restart


async def test_a_record_being_delivered_is_never_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    async with running(
        Spool(folder, max_bytes=30_000, segment_bytes=5_000, commit_interval_s=0)
    ) as spool:
        await spool.put(samples(100))
        in_flight = await spool.take(100)
        for start in range(100, 10_000, 100):
            await spool.put(samples(100, start))
        spool.ack(in_flight)
        rest = await take_all(spool)
        assert len(in_flight.samples) + len(rest.samples) + spool.stats.dropped_samples == 10_000
        assert in_flight.samples == samples(100)


@pytest.mark.parametrize("fallback", [False, True])
async def test_an_unusable_folder_is_an_error_or_memory_only(
    tmp_path: Path, fallback: bool
) -> None:
    with read_only(tmp_path / "ro") as folder:
        spool = Spool(folder / "spool", memory_fallback=fallback)
        if not fallback:
            with pytest.raises(SpoolError, match=r"cannot use the spool folder .*/ro/spool"):
                await spool.open()
            return
        async with running(spool):
            await spool.put(samples(10))
            assert spool.stats.memory_only
            assert "cannot use the spool folder" in spool.stats.last_error
            assert (await take_all(spool)).samples == samples(10)


async def test_one_folder_one_process(tmp_path: Path) -> None:
    async with running(Spool(tmp_path / "spool")):
        with pytest.raises(SpoolError, match="in use by another shopfloor process"):
            await Spool(tmp_path / "spool").open()


async def test_a_hundred_thousand_samples_pass_the_spool_whole_and_in_order(
    tmp_path: Path,
) -> None:
    """Many concurrent puts, taken in large batches (the rate is measured in bench/)."""
    batches = [samples(50, start) for start in range(0, 100_000, 50)]
    taken: list[Sample] = []
    async with running(Spool(tmp_path / "spool")) as spool:
        for b in batches:
            await spool.put(b)
        while len(taken) < 100_000:
            batch = await spool.take(5000)
            spool.ack(batch)
            taken += list(batch.samples)
    assert taken == [s for b in batches for s in b]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1GB", 10**9),
        ("512mb", 512 * 10**6),
        ("64KiB", 65536),
        ("1000", 1000),
        ("1.5G", 15 * 10**8),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "1XB", "0"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


async def test_spool_files_are_for_their_owner_only(tmp_path: Path) -> None:
    """Plant data: folders 0700, files 0600, like the keys (whatever the umask)."""
    folder = tmp_path / "spool"
    old = os.umask(0o022)
    try:
        async with running(Spool(folder)) as spool:
            await spool.put(samples(10))
            spool.ack(await take_all(spool))
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o700
    files = [p for p in folder.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"state.json", "lock"} and any(
        p.suffix == ".seg" for p in files
    )
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o600 for p in files}
