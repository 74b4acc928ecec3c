"""The spool's files: segment header, record framing, and finding intact records again.

A segment file starts with a header: magic `SFSG`, the format version, the segment id and a
CRC32 of those. Every record after it is framed to be found and checked on its own:

    marker D3 'SFR' | encoding u8 | flags u8 | reserved u16 | payload length u32 | samples u32 |
    points u32 | payload CRC32 u32 | header CRC32 u32 | payload

The header CRC covers the 24 bytes before it, so a record's length and counts are trusted only
when it matches. A reader that meets a bad header looks for the next marker whose header checks
out: a damaged record costs that record (its counts are known if its header is intact), never
the records after it. `encoding` says how the payload is encoded (1: JSON columns), so that
another encoding can come without changing the framing; versions and encodings a reader does
not know are refused with a message, never guessed at.

Format 1 (no segment header; length, CRC, samples, points, payload per record) is still read:
the spool converts such segments when it opens a folder.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from historian.sample import Point, Quality, Sample

FORMAT_VERSION = 2
SEGMENT_MAGIC = b"SFSG"
SEGMENT_HEADER = struct.Struct("<4sHHQ")  # magic, format version, reserved, segment id
RECORD_MARKER = b"\xd3SFR"
RECORD_HEADER = struct.Struct("<4sBBHIIII")  # marker .. payload CRC32 (see the docstring)
CRC = struct.Struct("<I")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size + CRC.size
RECORD_HEADER_SIZE = RECORD_HEADER.size + CRC.size
ENCODING_JSON = 1
LEGACY_FRAME = struct.Struct("<IIII")  # format 1: length, CRC32 of (counts + payload), counts

RECORD, CORRUPT, TORN = "record", "corrupt", "torn"
DECODE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError)


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


def decode(payload: bytes | memoryview, header: Header) -> tuple[list[Sample], list[Point]]:
    """A record's payload whose CRC matched, checked against the counts of its header."""
    samples, points = decode_record(payload)
    if (len(samples), len(points)) != (header.samples, header.points):
        raise ValueError("record counts do not match its header")
    return samples, points


def frame(samples: Sequence[Sample], points: Sequence[Point]) -> bytes:
    """A record as it is stored: header (with its CRC), then the payload."""
    payload = encode_record(samples, points)
    head = RECORD_HEADER.pack(
        RECORD_MARKER,
        ENCODING_JSON,
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
    if encoding != ENCODING_JSON:
        raise UnknownFormat(f"a record in encoding {encoding}; this shopfloor reads encoding 1")
    return Header(length, samples, points, crc)


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
            yield Span(CORRUPT, pos, end)
            pos = end
            continue
        end = pos + RECORD_HEADER_SIZE + head.length
        if end > size:
            yield Span(TORN, pos, size, head.samples, head.points)
            return
        intact = zlib.crc32(view[pos + RECORD_HEADER_SIZE : end]) == head.crc
        yield Span(RECORD if intact else CORRUPT, pos, end, head.samples, head.points)
        pos = end


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
