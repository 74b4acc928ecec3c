"""The spool's files: segment header, record framing, and finding intact records again.

A segment file starts with a header: magic `SFSG`, the format version, the segment id and a
CRC32 of those. Every record after it is framed to be found and checked on its own:

    marker D3 'SFR' | encoding u8 | flags u8 | reserved u16 | payload length u32 | samples u32 |
    points u32 | payload CRC32 u32 | header CRC32 u32 | payload

The header CRC covers the 24 bytes before it, so a record's length and counts are trusted only
when it matches. A reader that meets a bad header looks for the next marker whose header checks
out: a damaged record costs that record (its counts are known if its header is intact), never
the records after it. `encoding` says how the payload is encoded, so that another encoding
can come without changing the framing; versions and encodings a reader does not know are
refused with a message, never guessed at:

    1  JSON columns (samples given one by one, and every record holding points)
    2  a SampleBatch in binary (a poll cycle's reads, no points):
         groups u32 | runs u32 | samples u32 |
         per group: length u32 + zlib'd JSON list of [site, line, machine, signal] |
         per run: group u32, timestamp i64 | values f64 x samples | qualities u8 x samples
       (little-endian). A group is the series of one read, so a poll's series strings are
       written compressed once per record, and a sample costs 9 bytes.

Format 1 (no segment header; length, CRC, samples, points, payload per record) is still read:
the spool converts such segments when it opens a folder.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from core.sample import Point, Quality, Sample, SampleBatch, Series, SeriesKey

FORMAT_VERSION = 2
SEGMENT_MAGIC = b"SFSG"
SEGMENT_HEADER = struct.Struct("<4sHHQ")  # magic, format version, reserved, segment id
RECORD_MARKER = b"\xd3SFR"
RECORD_HEADER = struct.Struct("<4sBBHIIII")  # marker .. payload CRC32 (see the docstring)
CRC = struct.Struct("<I")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size + CRC.size
RECORD_HEADER_SIZE = RECORD_HEADER.size + CRC.size
ENCODING_JSON = 1
ENCODING_BATCH = 2
ENCODINGS = (ENCODING_JSON, ENCODING_BATCH)
BATCH_HEAD = struct.Struct("<III")  # groups, runs, samples
GROUP_LENGTH = struct.Struct("<I")
RUN = struct.Struct("<Iq")  # group, timestamp
_MAX_GROUP_BYTES = 1 << 24  # a group's JSON may not inflate past this (no zip bomb)
_MAX_CACHED_GROUPS = 10_000
LEGACY_FRAME = struct.Struct("<IIII")  # format 1: length, CRC32 of (counts + payload), counts

RECORD, CORRUPT, TORN = "record", "corrupt", "torn"
DECODE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, zlib.error)


class UnknownFormat(Exception):
    """A segment written by a newer shopfloor (a format version or encoding not known here)."""


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a segment: an intact record, a corrupt stretch, or a torn tail. `samples`
    and `points` are None where no intact header says how many there were."""

    kind: str
    start: int
    end: int
    samples: int | None = None
    points: int | None = None


@dataclass(frozen=True, slots=True)
class Header:
    length: int
    samples: int
    points: int
    crc: int
    encoding: int = ENCODING_JSON


_QUALITIES = tuple(Quality)
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # allows NaN: a BAD sample has no value
_loads = json.JSONDecoder().decode


def encode_record(samples: Sequence[Sample], points: Sequence[Point]) -> bytes:
    """One record's payload as JSON, column-wise with each series key written once.

    JSON because a spool must be safe to load (no pickle: a folder may come from another
    machine); column-wise because a connector's batch has many samples of few series.
    """
    index: dict[tuple[str, str, str, str], int] = {}
    series = []
    for s in samples:
        key = (s.site, s.line, s.machine, s.signal)
        found = index.get(key)
        if found is None:
            found = index[key] = len(index)
        series.append(found)
    doc: dict[str, Any] = {
        "k": list(index),
        "i": series,
        "v": [s.value for s in samples],
        "q": [int(s.quality) for s in samples],
        "t": [s.source_ts for s in samples],
    }
    if points:
        doc["p"] = [[p.measurement, p.tags, p.fields, p.ts] for p in points]
    return _dumps(doc).encode()


def decode_record(payload: bytes | memoryview) -> tuple[list[Sample], list[Point]]:
    """The samples and points `encode_record` was given; DECODE_ERRORS if it is not one."""
    doc = _loads(bytes(payload).decode())
    keys, qualities = doc["k"], _QUALITIES
    samples = [
        Sample(line, machine, signal, float(value), qualities[quality], ts, site)
        for (site, line, machine, signal), value, quality, ts in zip(
            (keys[i] for i in doc["i"]), doc["v"], doc["q"], doc["t"], strict=True
        )
    ]
    points = [Point(m, tags, fields, ts) for m, tags, fields, ts in doc.get("p", ())]
    return samples, points


# series of a read <-> its compressed JSON, both ways, so each is built once per process
_group_blobs: dict[tuple[SeriesKey, ...], bytes] = {}
_blob_groups: dict[bytes, tuple[SeriesKey, ...]] = {}


def _bounded(cache: dict[Any, Any]) -> dict[Any, Any]:
    if len(cache) >= _MAX_CACHED_GROUPS:
        cache.clear()
    return cache


def _blob_of(series: tuple[SeriesKey, ...]) -> bytes:
    """The blob of `series`; reading it back in this process gives the same series object,
    not a copy of its keys (~300 B a series at plant scale), hash already computed."""
    blob = _group_blobs.get(series)
    if blob is None:
        blob = _bounded(_group_blobs)[series] = zlib.compress(_dumps(series).encode(), 6)
        _bounded(_blob_groups)[blob] = series if isinstance(series, Series) else Series(series)
    return blob


def _group_of(blob: bytes) -> tuple[SeriesKey, ...]:
    series = _blob_groups.get(blob)
    if series is None:
        inflater = zlib.decompressobj()
        text = inflater.decompress(blob, _MAX_GROUP_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("a series group is cut short or too large")
        keys = _loads(text.decode())
        series = Series((site, line, machine, signal) for site, line, machine, signal in keys)
        if not all(isinstance(part, str) for key in series for part in key):
            raise ValueError("a series key holds a part that is not a string")
        _bounded(_blob_groups)[blob] = series
    return series


def _little_endian(values: array[float]) -> array[float]:
    if sys.byteorder == "big":
        values = array("d", values)
        values.byteswap()
    return values


def encode_batch(batch: SampleBatch) -> bytes:
    """A SampleBatch as an encoding 2 payload (see the module docstring)."""
    groups: dict[tuple[SeriesKey, ...], int] = {}
    runs = []
    for series, ts in batch.runs:
        group = groups.get(series)
        if group is None:
            group = groups[series] = len(groups)
        runs.append(RUN.pack(group, ts))
    parts = [BATCH_HEAD.pack(len(groups), len(runs), len(batch))]
    for series in groups:
        blob = _blob_of(series)
        parts += (GROUP_LENGTH.pack(len(blob)), blob)
    parts += runs
    parts += (_little_endian(batch.values).tobytes(), bytes(batch.qualities))
    return b"".join(parts)


def decode_batch(payload: bytes | memoryview) -> SampleBatch:
    """The SampleBatch `encode_batch` was given; DECODE_ERRORS if it is not one."""
    data = bytes(payload)
    n_groups, n_runs, n_samples = BATCH_HEAD.unpack_from(data)
    pos = BATCH_HEAD.size
    groups = []
    for _ in range(n_groups):
        (length,) = GROUP_LENGTH.unpack_from(data, pos)
        pos += GROUP_LENGTH.size
        groups.append(_group_of(data[pos : pos + length]))
        pos += length
    batch = SampleBatch()
    for group, ts in RUN.iter_unpack(data[pos : pos + n_runs * RUN.size]):
        batch.runs.append((groups[group], ts))
    pos += n_runs * RUN.size
    if sum(len(series) for series, _ in batch.runs) != n_samples:
        raise ValueError("the runs of a batch do not add up to its samples")
    if len(data) != pos + n_samples * 9:
        raise ValueError("a batch's columns do not fit its length")
    batch.values.frombytes(data[pos : pos + n_samples * 8])
    batch.values = _little_endian(batch.values)
    batch.qualities = bytearray(data[pos + n_samples * 8 :])
    if n_samples and max(batch.qualities) >= len(_QUALITIES):
        raise ValueError("a quality is not one of the data model's")
    return batch


def decode(
    payload: bytes | memoryview, header: Header
) -> tuple[list[Sample] | SampleBatch, list[Point]]:
    """A record's payload whose CRC matched, checked against the counts of its header."""
    samples: list[Sample] | SampleBatch
    points: list[Point]
    if header.encoding == ENCODING_BATCH:
        samples, points = decode_batch(payload), []
    else:
        samples, points = decode_record(payload)
    if (len(samples), len(points)) != (header.samples, header.points):
        raise ValueError("record counts do not match its header")
    return samples, points


def frame(samples: Sequence[Sample], points: Sequence[Point]) -> bytes:
    """A record as it is stored: header (with its CRC), then the payload (a SampleBatch
    without points in encoding 2, anything else in encoding 1)."""
    if isinstance(samples, SampleBatch) and not points:
        encoding, payload = ENCODING_BATCH, encode_batch(samples)
    else:
        encoding, payload = ENCODING_JSON, encode_record(samples, points)
    head = RECORD_HEADER.pack(
        RECORD_MARKER,
        encoding,
        0,
        0,
        len(payload),
        len(samples),
        len(points),
        zlib.crc32(payload),
    )
    return head + CRC.pack(zlib.crc32(head)) + payload


def segment_header(seg_id: int) -> bytes:
    head = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, seg_id)
    return head + CRC.pack(zlib.crc32(head))


def has_header(data: bytes) -> bool:
    """Whether `data` starts with an intact segment header; UnknownFormat for a newer one."""
    if len(data) < SEGMENT_HEADER_SIZE or not data.startswith(SEGMENT_MAGIC):
        return False
    (crc,) = CRC.unpack_from(data, SEGMENT_HEADER.size)
    if zlib.crc32(data[: SEGMENT_HEADER.size]) != crc:
        return False
    _, version, _, _ = SEGMENT_HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UnknownFormat(f"written in spool format {version}; this shopfloor reads 1 and 2")
    return True


def header_at(data: bytes | memoryview, pos: int) -> Header | None:
    """The record header at `pos` if it is intact; UnknownFormat for an unknown encoding."""
    if pos + RECORD_HEADER_SIZE > len(data):
        return None
    marker, encoding, _, _, length, samples, points, crc = RECORD_HEADER.unpack_from(data, pos)
    if marker != RECORD_MARKER:
        return None
    (head_crc,) = CRC.unpack_from(data, pos + RECORD_HEADER.size)
    if zlib.crc32(data[pos : pos + RECORD_HEADER.size]) != head_crc:
        return None
    if encoding not in ENCODINGS:
        raise UnknownFormat(
            f"a record in encoding {encoding}; this shopfloor reads encodings 1 and 2"
        )
    return Header(length, samples, points, crc, encoding)


def next_header(data: bytes, pos: int) -> int | None:
    """Where the next intact record header starts, at or after `pos`."""
    while (found := data.find(RECORD_MARKER, pos)) >= 0:
        if header_at(data, found) is not None:
            return found
        pos = found + 1
    return None


def spans(data: bytes, pos: int) -> Iterator[Span]:
    """Intact records, corrupt stretches and a torn tail (a last record cut short), in order."""
    view, size = memoryview(data), len(data)
    while pos < size:
        head = header_at(data, pos)
        if head is None:
            if size - pos < RECORD_HEADER_SIZE:
                yield Span(TORN, pos, size)
                return
            found = next_header(data, pos + 1)
            end = size if found is None else found
            yield Span(CORRUPT, pos, end, *inferred_counts(view[pos:end]))
            pos = end
            continue
        end = pos + RECORD_HEADER_SIZE + head.length
        if end > size:
            yield Span(TORN, pos, size, head.samples, head.points)
            return
        intact = zlib.crc32(view[pos + RECORD_HEADER_SIZE : end]) == head.crc
        yield Span(RECORD if intact else CORRUPT, pos, end, head.samples, head.points)
        pos = end


def inferred_counts(raw: bytes | memoryview) -> tuple[int, int] | tuple[None, None]:
    """(samples, points) of a record whose header is damaged but whose payload still decodes
    as one record of either encoding (the header's fields are not trusted); (None, None)
    where the payload does not decode either: then how many samples were lost is unknown.
    A stretch too short for a record header (a damaged segment header) held none."""
    if len(raw) < RECORD_HEADER_SIZE:
        return 0, 0
    payload = raw[RECORD_HEADER_SIZE:]
    try:
        return len(decode_batch(payload)), 0
    except (*DECODE_ERRORS, struct.error):
        pass
    try:
        samples, points = decode_record(payload)
    except DECODE_ERRORS:
        return None, None
    return len(samples), len(points)


def is_legacy(data: bytes) -> bool:
    """Whether `data` is a format 1 segment (its first record checks out)."""
    return not data.startswith(SEGMENT_MAGIC) and bool(legacy_records(data)[0])


def legacy_records(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(offset, payload) of each format 1 record up to the first bad one, and where that is."""
    records, pos, view = [], 0, memoryview(data)
    while pos + LEGACY_FRAME.size <= len(data):
        length, crc, _, _ = LEGACY_FRAME.unpack_from(data, pos)
        end = pos + LEGACY_FRAME.size + length
        if end > len(data) or zlib.crc32(view[pos + 8 : end]) != crc:
            break
        records.append((pos, bytes(view[pos + LEGACY_FRAME.size : end])))
        pos = end
    return records, pos
