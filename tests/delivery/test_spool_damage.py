"""A spool whose disk lies: bytes flipped at random places (seeded) in a stopped and in a running
spool, a damaged segment header. Every intact record comes back; what cannot be read is
quarantined and counted exactly (bytes, and samples where a header or the segment's totals
say how many); nothing crashes."""

from __future__ import annotations

import json
import logging
import random
import struct
import zlib
from pathlib import Path

import pytest

from core.sample import Sample
from delivery import spool_format as fmt
from delivery.spool import HEADER, Spool, SpoolError
from tests.delivery.test_spool import running, samples, take_all

RECORDS = 60
PER_RECORD = 100


async def fill(folder: Path) -> list[list[Sample]]:
    """RECORDS records of PER_RECORD samples, over several segments; the spool stopped."""
    batches = [samples(PER_RECORD, i * PER_RECORD) for i in range(RECORDS)]
    async with running(Spool(folder, segment_bytes=40_000)) as spool:
        for batch in batches:
            await spool.put(batch)
    return batches


def layout(folder: Path) -> list[tuple[Path, fmt.Span]]:
    """Every record on disk, in order, as (segment file, span)."""
    found = []
    for path in sorted(folder.glob("*.seg")):
        data = path.read_bytes()
        found += [(path, span) for span in fmt.spans(data, HEADER)]
    assert all(span.kind == fmt.RECORD for _, span in found)
    return found


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def damage(records: list[tuple[Path, fmt.Span]], rng: random.Random, count: int) -> dict:
    """Flip one byte in each of `count` records; which were hit, and how."""
    hit: dict[int, str] = {}
    for index in rng.sample(range(len(records)), count):
        path, span = records[index]
        offset = rng.randrange(span.start, span.end)
        flip(path, offset)
        hit[index] = "header" if offset < span.start + fmt.RECORD_HEADER_SIZE else "payload"
    return hit


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_stopped_spool_keeps_every_intact_record_and_counts_what_it_cannot_read(
    tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "spool"
    batches = await fill(folder)
    records = layout(folder)
    assert len({path for path, _ in records}) >= 3
    rng = random.Random(seed)
    hit = damage(records, rng, 5)
    segments = sorted({path for path, _ in records})
    flip(rng.choice(segments[1:]), rng.randrange(HEADER))  # a damaged segment header too
    caplog.set_level(logging.WARNING)

    async with running(Spool(folder)) as spool:
        taken = await take_all(spool)
        stats = spool.stats
    kept = [s for i, batch in enumerate(batches) if i not in hit for s in batch]
    assert taken.samples == kept
    known = PER_RECORD * len(hit)  # a damaged header's samples are counted from its payload
    assert stats.dropped_samples == stats.unreadable_samples == known
    hit_bytes = sum(records[i][1].end - records[i][1].start for i in hit)
    assert stats.unreadable_bytes == hit_bytes + HEADER
    quarantined = list((folder / "quarantine").glob("*.bad"))
    assert sum(p.stat().st_size for p in quarantined) == stats.unreadable_bytes
    state = json.loads((folder / "state.json").read_text())
    assert state["unreadable_bytes"] == stats.unreadable_bytes
    assert state["dropped_samples"] == known
    assert "never acknowledged" not in caplog.text
    assert "unreadable bytes" in caplog.text

    async with running(Spool(folder)) as again:  # the repaired spool: no loss counted twice
        assert (await take_all(again)).samples == kept
        assert again.stats.unreadable_bytes == stats.unreadable_bytes
        assert again.stats.dropped_samples == known


async def test_the_quarantine_stays_under_its_share_of_the_spool_and_losses_still_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that keeps failing must not fill the file system with copies of its damage."""
    folder = tmp_path / "spool"
    max_bytes = 16 * 25_000  # a quarantine of at most 25,000 bytes: a few records' worth
    batches = [samples(PER_RECORD, i * PER_RECORD) for i in range(RECORDS)]
    async with running(Spool(folder, max_bytes=max_bytes, segment_bytes=40_000)) as spool:
        for batch in batches:
            await spool.put(batch)
    records = layout(folder)
    payload = fmt.RECORD_HEADER_SIZE + 1
    hit = list(range(0, RECORDS, 2))
    for index in hit:  # one payload byte in every other record: far more than 25,000 bytes
        path, span = records[index]
        flip(path, span.start + payload)
    caplog.set_level(logging.WARNING)

    async with running(Spool(folder, max_bytes=max_bytes)) as again:
        taken = await take_all(again)
        stats = again.stats
    hit_bytes = sum(records[i][1].end - records[i][1].start for i in hit)
    assert hit_bytes > 2 * 25_000
    assert taken.samples == [s for i, b in enumerate(batches) if i not in hit for s in b]
    assert stats.unreadable_bytes == hit_bytes
    assert stats.dropped_samples == len(hit) * PER_RECORD
    kept = sum(p.stat().st_size for p in (folder / "quarantine").glob("*.bad"))
    assert 0 < kept <= 25_000
    assert "its limit is 25000" in caplog.text


async def test_a_running_spool_reads_past_damage_and_keeps_going(tmp_path: Path) -> None:
    """Damage ahead of the reader while running: a record with a damaged payload (its header
    says how many samples it held) and one with a damaged header (the segment's totals say it
    once the reader has met the whole segment). No exception; the spool goes on working."""
    folder = tmp_path / "spool"
    async with running(Spool(folder, segment_bytes=1 << 20)) as spool:
        batches = [samples(PER_RECORD, i * PER_RECORD) for i in range(20)]
        for batch in batches:
            await spool.put(batch)
        first = await spool.take(PER_RECORD)
        spool.ack(first)
        records = layout(folder)
        (path, payload_hit), (_, header_hit) = records[5][0:2], records[9][0:2]
        flip(path, payload_hit.start + fmt.RECORD_HEADER_SIZE + 7)
        flip(path, header_hit.start + 9)
        rest = await take_all(spool)
        assert first.samples + rest.samples == [
            s for i, b in enumerate(batches) if i not in (5, 9) for s in b
        ]
        assert spool.stats.dropped_samples == spool.stats.unreadable_samples == 2 * PER_RECORD
        assert spool.stats.unreadable_bytes == sum(
            s.end - s.start for s in (payload_hit, header_hit)
        )
        spool.ack(rest)
        assert spool.stats.samples == 0
        await spool.put(samples(10, 10_000))  # still collecting
        assert (await take_all(spool)).samples == samples(10, 10_000)
    async with running(Spool(folder)) as again:  # counted once, also after a restart
        assert again.stats.dropped_samples == 2 * PER_RECORD


def legacy_record(batch: list[Sample]) -> bytes:
    """A record as spool format 1 stored it: length, CRC32 of (counts + payload), counts."""
    payload = fmt.encode_record(batch, ())
    counts = struct.pack("<II", len(batch), 0)
    return struct.pack("<II", len(payload), zlib.crc32(payload, zlib.crc32(counts))) + (
        counts + payload
    )


async def test_a_spool_of_format_1_is_replayed_and_converted(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    batches = [samples(PER_RECORD, i * PER_RECORD) for i in range(4)]
    records = [legacy_record(b) for b in batches]
    (folder / f"{1:016d}.seg").write_bytes(b"".join(records) + records[3][:30])  # torn tail
    state = {"cursor": [1, len(records[0])], "dropped_samples": 7, "dropped_points": 0}
    (folder / "state.json").write_text(json.dumps(state))  # the first record was delivered
    async with running(Spool(folder)) as spool:
        assert (await take_all(spool)).samples == [s for b in batches[1:] for s in b]
        assert spool.stats.dropped_samples == 7 and spool.stats.unreadable_bytes == 0
    assert (folder / f"{1:016d}.seg").read_bytes().startswith(fmt.SEGMENT_MAGIC)
    async with running(Spool(folder)) as again:
        assert len((await take_all(again)).samples) == 3 * PER_RECORD


async def test_a_segment_of_a_newer_format_is_refused_with_a_message(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    head = fmt.SEGMENT_HEADER.pack(fmt.SEGMENT_MAGIC, 3, 0, 1)
    (folder / f"{1:016d}.seg").write_bytes(head + fmt.CRC.pack(zlib.crc32(head)))
    with pytest.raises(SpoolError, match="format 3; this shopfloor reads 1 and 2") as caught:
        await Spool(folder).open()
    assert not caught.value.memory_helps
