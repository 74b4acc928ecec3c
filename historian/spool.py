"""A durable spool between the connectors and the historian: store and forward, nothing lost.

Every batch a connector hands over is appended to a segment file and fsync'd (group commit: one
fsync for every record that arrived meanwhile, at most one per `commit_interval_s`) before `put`
returns, so a batch the connector counts as taken survives a crash or a power loss. The writer
reads records in order and acknowledges them once the historian has taken them; the cursor (the
first unacknowledged position) is kept in `state.json`, and segments wholly behind it are
deleted. On start the spool replays everything after the cursor: delivery is at least once, and
a replay overwrites the same series and timestamp in the historian, so it adds no duplicates.

Each record is framed with its length, its sample and point counts and a CRC32, so a tail torn
by a power loss is found and cut on start. The spool is bounded: past `max_bytes` the oldest
segment that is not being delivered is dropped whole, and its samples and points are added to
persistent counters, logged and shown in the stats, never silently.

Without a folder (or when the folder fails and `memory_fallback` allows it) records are held in
memory instead, bounded by `memory_samples`: then `put` waits while the historian is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from historian.sample import Point, Quality, Sample

log = logging.getLogger(__name__)

FRAME = struct.Struct("<IIII")  # payload length, CRC32 of (counts + payload), samples, points
LENGTH_CRC = struct.Struct("<II")
COUNTS = struct.Struct("<II")
STATE_FILE = "state.json"
LOCK_FILE = "lock"
SEGMENT_SUFFIX = ".seg"
DEFAULT_MAX_BYTES = 1 << 30

Position = tuple[int, int]  # (segment id, byte offset)


class SpoolError(Exception):
    """The spool folder cannot be used; the message says which folder and why."""


@dataclass(slots=True)
class SpoolStats:
    """What the spool holds and has lost, for health points, /health and the live status."""

    folder: str = ""
    bytes: int = 0
    samples: int = 0
    points: int = 0
    spooled_samples: int = 0
    dropped_samples: int = 0
    dropped_points: int = 0
    memory_only: bool = False
    last_error: str = ""


@dataclass(slots=True)
class Batch:
    """Records read from the spool, in order; acknowledge it once the historian has it."""

    samples: list[Sample] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    end: Position | None = None
    from_memory: int = 0

    def extend(self, other: Batch) -> None:
        self.samples += other.samples
        self.points += other.points
        self.end = other.end or self.end
        self.from_memory += other.from_memory


@dataclass(slots=True)
class _Segment:
    id: int
    size: int = 0
    samples: int = 0
    points: int = 0


@dataclass(slots=True)
class _Group:
    """Records handed over since the last commit, with the callers waiting for it."""

    frames: list[bytes] = field(default_factory=list)
    records: list[tuple[list[Sample], list[Point]]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    nbytes: int = 0
    samples: int = 0
    points: int = 0


_QUALITIES = tuple(Quality)
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # allows NaN: a BAD sample has no value
_loads = json.JSONDecoder().decode


def encode_record(samples: Sequence[Sample], points: Sequence[Point]) -> bytes:
    """One record as JSON, column-wise with each series key written once.

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


def decode_record(payload: bytes) -> tuple[list[Sample], list[Point]]:
    """The samples and points `encode_record` was given."""
    doc = _loads(payload.decode())
    keys, qualities = doc["k"], _QUALITIES
    samples = [
        Sample(line, machine, signal, float(value), qualities[quality], ts, site)
        for (site, line, machine, signal), value, quality, ts in zip(
            (keys[i] for i in doc["i"]), doc["v"], doc["q"], doc["t"], strict=True
        )
    ]
    points = [Point(m, tags, fields, ts) for m, tags, fields, ts in doc.get("p", ())]
    return samples, points


def frame(samples: Sequence[Sample], points: Sequence[Point]) -> bytes:
    """A record as it is stored: length, CRC32 of (counts + payload), counts, payload."""
    payload = encode_record(samples, points)
    counts = COUNTS.pack(len(samples), len(points))
    return LENGTH_CRC.pack(len(payload), zlib.crc32(payload, zlib.crc32(counts))) + counts + payload


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`1GB`, `512MB`, `64KiB`, `1000000` as bytes (decimal units, or binary with `i`)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"not a size: {text!r} (e.g. 1GB, 512MB, 64KiB)")
    power = " KMGT".index(match[2].upper() or " ")
    return int(float(match[1]) * (1024 if match[3] else 1000) ** power)


class Spool:
    """Store and forward: `put` (durable when it returns), `take`, `ack`; `run` commits."""

    def __init__(
        self,
        folder: str | Path | None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int | None = None,
        commit_interval_s: float = 0.0,
        memory_samples: int = 100_000,
        memory_fallback: bool = False,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or min(8 << 20, max(4096, max_bytes // 16))
        self.commit_interval_s = commit_interval_s
        self.memory_samples = memory_samples
        self.memory_fallback = memory_fallback
        self.stats = SpoolStats(folder=str(self.folder or ""), memory_only=self.folder is None)
        self._segments: dict[int, _Segment] = {}
        self._active = _Segment(0)
        self._fd = -1
        self._lock: IO[bytes] | None = None
        self._cursor: Position = (0, 0)
        self._read_pos: Position = (0, 0)
        self._reading_upto = -1
        self._doomed: list[int] = []
        self._state_dirty = False
        self._group = _Group()
        self._memory: deque[tuple[list[Sample], list[Point]]] = deque()
        self._memory_held = 0
        self._work = asyncio.Event()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self._failure: SpoolError | None = None
        self._disk_bytes = 0
        self._opened = False

    # -- opening and closing ------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the folder, cut torn tails, find what is left to replay. A folder that cannot
        be used is a SpoolError, or memory-only mode (logged) if `memory_fallback` allows."""
        if self._opened:
            return
        self._opened = True
        if self.folder is None:
            return
        try:
            await asyncio.to_thread(self._open_disk)
        except OSError as exc:
            self._release()
            message = f"cannot use the spool folder {self.folder}: {exc.strerror or exc}"
            if not self.memory_fallback:
                raise SpoolError(message) from None
            self._go_memory_only(message)
            return
        if self.stats.samples or self.stats.points:
            log.warning(
                "spool %s: replaying %d samples and %d points not yet delivered",
                self.folder,
                self.stats.samples,
                self.stats.points,
            )

    def _open_disk(self) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = (self.folder / LOCK_FILE).open("ab")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release()
            raise SpoolError(
                f"the spool folder {self.folder} is in use by another shopfloor process; "
                "give each process its own --spool folder"
            ) from None
        self._load_state()
        for seg_id in self._doomed:
            self._segment_path(seg_id).unlink(missing_ok=True)
        self._doomed = []
        ids = sorted(
            int(p.stem) for p in self.folder.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit()
        )
        for seg_id in ids:
            if seg_id < self._cursor[0]:
                self._segment_path(seg_id).unlink()
                continue
            segment = self._scan(seg_id)
            if segment.size == 0:
                self._segment_path(seg_id).unlink()
            else:
                self._segments[seg_id] = segment
        self._active = _Segment(max([*ids, self._cursor[0]], default=0) + 1)
        self._segments[self._active.id] = self._active
        at_cursor = self._segments.get(self._cursor[0])
        if at_cursor is None:  # its segment was wholly delivered: start at the first one left
            self._cursor = (next(iter(self._segments)), 0)
        else:
            self._cursor = (at_cursor.id, min(self._cursor[1], at_cursor.size))
        self._read_pos = self._cursor
        self._fd = self._open_segment(self._active.id)
        self._disk_bytes = sum(s.size for s in self._segments.values())
        self._report_bytes()
        self._save_state(self._state())

    def _load_state(self) -> None:
        assert self.folder is not None
        path = self.folder / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            self._cursor = (int(state["cursor"][0]), int(state["cursor"][1]))
            self.stats.dropped_samples = int(state["dropped_samples"])
            self.stats.dropped_points = int(state["dropped_points"])
            self._doomed = [int(i) for i in state.get("doomed", [])]
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("spool %s: unreadable %s (%s); replaying everything", path, STATE_FILE, exc)

    def _scan(self, seg_id: int) -> _Segment:
        """Count a segment's records from the cursor on; cut a tail torn by a power loss."""
        path = self._segment_path(seg_id)
        data = path.read_bytes()
        segment, pos, skip = _Segment(seg_id), 0, seg_id == self._cursor[0]
        while pos + FRAME.size <= len(data):
            length, crc, samples, points = FRAME.unpack_from(data, pos)
            end = pos + FRAME.size + length
            if end > len(data) or zlib.crc32(data[pos + 8 : end]) != crc:
                break
            if not (skip and pos < self._cursor[1]):
                segment.samples += samples
                segment.points += points
            pos = end
        if pos < len(data):
            log.warning(
                "spool %s: cut a torn or corrupt tail of %d bytes (the process or machine "
                "stopped while writing; those records were never acknowledged)",
                path,
                len(data) - pos,
            )
            os.truncate(path, pos)
        segment.size = pos
        self.stats.samples += segment.samples
        self.stats.points += segment.points
        return segment

    def _segment_path(self, seg_id: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{seg_id:016d}{SEGMENT_SUFFIX}"

    def _open_segment(self, seg_id: int) -> int:
        fd = os.open(self._segment_path(seg_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync_folder()
        return fd

    def _fsync_folder(self) -> None:
        assert self.folder is not None
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _state(self) -> dict[str, Any]:
        return {
            "cursor": list(self._cursor),
            "dropped_samples": self.stats.dropped_samples,
            "dropped_points": self.stats.dropped_points,
            "doomed": list(self._doomed),
        }

    def _save_state(self, state: dict[str, Any]) -> None:
        """Replace state.json atomically: write a temporary file, fsync, rename, fsync the
        folder; a crash leaves the old state or the new one, never half of one."""
        assert self.folder is not None
        tmp = self.folder / (STATE_FILE + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(state, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.folder / STATE_FILE)
        self._fsync_folder()

    async def close(self) -> None:
        """Save the cursor, close the files and unlock the folder."""
        if self._fd >= 0 and self._failure is None and not self.stats.memory_only:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._save_state, self._state())
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- taking records -----------------------------------------------------------------------

    async def put(self, samples: Sequence[Sample], points: Sequence[Point] = ()) -> None:
        """Take a batch; on disk, returns once it is fsync'd. In memory, waits for room."""
        self._check()
        if self.stats.memory_only:
            await self._put_memory(list(samples), list(points))
            return
        waiter = asyncio.get_running_loop().create_future()
        record = frame(samples, points)
        group = self._group
        group.frames.append(record)
        group.records.append((list(samples), list(points)))
        group.waiters.append(waiter)
        group.nbytes += len(record)
        group.samples += len(samples)
        group.points += len(points)
        self._work.set()
        await asyncio.shield(waiter)

    async def _put_memory(self, samples: list[Sample], points: list[Point]) -> None:
        while self._memory_held >= self.memory_samples:
            self._room.clear()
            await self._room.wait()
            self._check()
        self._memory.append((samples, points))
        self._memory_held += len(samples)
        self.stats.samples += len(samples)
        self.stats.points += len(points)
        self.stats.spooled_samples += len(samples)
        self._arrived.set()

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    # -- committing ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit groups until cancelled; then commit what is left. A folder that fails raises
        SpoolError here (or turns to memory-only mode, if allowed)."""
        await self.open()
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._work.wait()
                self._work.clear()
                await asyncio.sleep(
                    max(0.0, self._last_commit + self.commit_interval_s - loop.time())
                )
                self._last_commit = loop.time()
                self._committing = asyncio.create_task(self._commit())
                await asyncio.shield(self._committing)
        except asyncio.CancelledError:
            if self._committing is not None:
                with contextlib.suppress(SpoolError):
                    await self._committing
            with contextlib.suppress(SpoolError):
                await self._commit()
            raise

    async def _commit(self) -> None:
        if self.stats.memory_only or self._failure is not None:
            return
        group, self._group = self._group, _Group()
        try:
            if group.frames:
                await self._append(group)
        except OSError as exc:
            self._disk_failed(exc, group)
            return
        for waiter in group.waiters:
            if not waiter.done():
                waiter.set_result(None)
        if group.frames:
            self._arrived.set()
        try:
            await self._tidy()
        except OSError as exc:
            self._disk_failed(exc, _Group())

    async def _tidy(self) -> None:
        """Enforce the size limit, save the state if it changed, delete finished segments."""
        dropped = self._enforce_limit()
        if self._state_dirty or dropped:
            self._state_dirty = False
            await asyncio.to_thread(self._save_state, self._state())
        await self._delete_done()
        self._report_bytes()

    def _report_bytes(self) -> None:
        """`stats.bytes`: what is on disk and not yet delivered (delivered records wait for
        their segment to be complete before it is deleted)."""
        seg_id, offset = self._cursor
        delivered = sum(s.size for s in self._segments.values() if s.id < seg_id)
        delivered += offset if seg_id in self._segments else 0
        self.stats.bytes = self._disk_bytes - delivered

    async def _append(self, group: _Group) -> None:
        rotate = self._active.size > 0 and self._active.size + group.nbytes > self.segment_bytes
        new_id = self._active.id + 1 if rotate else None
        self._fd = await asyncio.to_thread(self._write, b"".join(group.frames), new_id)
        if new_id is not None:
            self._active = self._segments[new_id] = _Segment(new_id)
        self._active.size += group.nbytes
        self._active.samples += group.samples
        self._active.points += group.points
        self._disk_bytes += group.nbytes
        self.stats.samples += group.samples
        self.stats.points += group.points
        self.stats.spooled_samples += group.samples

    def _write(self, data: bytes, new_id: int | None) -> int:
        """Append and fsync (in a thread); with `new_id`, seal the active segment first."""
        fd = self._fd
        if new_id is not None:
            os.close(fd)
            fd = self._fd = -1
            fd = self._open_segment(new_id)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return fd

    def _enforce_limit(self) -> bool:
        """Drop whole segments, oldest first, that nobody is delivering, until under the limit."""
        dropped = False
        while self._disk_bytes > self.max_bytes:
            untouched = self._read_pos[1] == 0 and self._cursor == self._read_pos
            floor = max(self._read_pos[0] - untouched, self._reading_upto)
            victim = next(
                (s for s in self._segments.values() if s.id > floor and s is not self._active),
                None,
            )
            if victim is None:
                break
            del self._segments[victim.id]
            self._doomed.append(victim.id)
            self._disk_bytes -= victim.size
            self.stats.samples -= victim.samples
            self.stats.points -= victim.points
            self.stats.dropped_samples += victim.samples
            self.stats.dropped_points += victim.points
            dropped = True
            self.stats.last_error = (
                f"spool full ({self.max_bytes} bytes): dropped {self.stats.dropped_samples} "
                f"samples and {self.stats.dropped_points} points so far"
            )
            log.error(
                "spool %s is full (%d bytes): dropped the oldest %d samples and %d points not "
                "yet delivered (%d samples dropped in all)",
                self.folder,
                self.max_bytes,
                victim.samples,
                victim.points,
                self.stats.dropped_samples,
            )
        return dropped

    async def _delete_done(self) -> None:
        """Unlink dropped segments and those wholly acknowledged (the state is saved first)."""
        seg_id, offset = self._cursor
        done = [
            s
            for s in self._segments.values()
            if s is not self._active and (s.id < seg_id or (s.id == seg_id and offset >= s.size))
        ]
        doomed = list(self._doomed)
        if not done and not doomed:
            return
        paths = [self._segment_path(s.id) for s in done] + [self._segment_path(i) for i in doomed]
        await asyncio.to_thread(_unlink_all, paths)
        for segment in done:
            del self._segments[segment.id]
            self._disk_bytes -= segment.size
        self._doomed = [i for i in self._doomed if i not in doomed]
        self._state_dirty = self._state_dirty or bool(doomed)

    def _disk_failed(self, exc: OSError, group: _Group) -> None:
        message = f"the spool folder {self.folder} failed: {exc.strerror or exc}"
        if self.memory_fallback:
            self._go_memory_only(message, group)
            return
        self._failure = SpoolError(message)
        self.stats.last_error = message
        log.error("%s; stopping", message)
        for waiter in group.waiters + self._group.waiters:
            if not waiter.done():
                waiter.set_exception(self._failure)
        self._arrived.set()
        self._room.set()
        raise self._failure

    def _go_memory_only(self, message: str, failed: _Group | None = None) -> None:
        """From now on hold records in memory, those not yet on disk first, in order."""
        self.stats.memory_only = True
        self.stats.last_error = message
        log.error(
            "%s; continuing in memory only: what is not yet delivered is lost if this process "
            "stops",
            message,
        )
        for group in (failed, self._group):
            if group is None:
                continue
            for samples, points in group.records:
                self._memory.append((samples, points))
                self._memory_held += len(samples)
                self.stats.samples += len(samples)
                self.stats.points += len(points)
                self.stats.spooled_samples += len(samples)
            for waiter in group.waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._group = _Group()
        self._arrived.set()

    # -- delivering ---------------------------------------------------------------------------

    async def arrival(self) -> None:
        """Wait until records may have arrived since the last `take` (or the spool failed)."""
        await self._arrived.wait()
        self._check()

    async def take(self, max_samples: int) -> Batch:
        """The next records not yet read, up to `max_samples` (at least one record if any);
        safe to cancel: what was not returned is read again."""
        self._check()
        self._arrived.clear()
        plan = self._plan()
        batch = Batch()
        if plan:
            self._reading_upto = plan[-1][0]
            try:
                batch = await asyncio.to_thread(self._read_disk, plan, max_samples)
            except OSError as exc:
                raise SpoolError(f"cannot read the spool folder {self.folder}: {exc}") from None
            finally:
                self._reading_upto = -1
            assert batch.end is not None
            self._read_pos = batch.end
        while self._memory and len(batch.samples) < max_samples:
            samples, points = self._memory.popleft()
            batch.samples += samples
            batch.points += points
            batch.from_memory += len(samples)
        if self._memory:
            self._arrived.set()
        return batch

    def _plan(self) -> list[tuple[int, int, int]]:
        """(segment, from, to) ranges of committed records after the read position."""
        seg_id, offset = self._read_pos
        plan = []
        for segment in self._segments.values():
            start = offset if segment.id == seg_id else 0
            if segment.id >= seg_id and segment.size > start:
                plan.append((segment.id, start, segment.size))
        return plan

    def _read_disk(self, plan: list[tuple[int, int, int]], max_samples: int) -> Batch:
        batch = Batch()
        for seg_id, start, stop in plan:
            pos = start
            with self._segment_path(seg_id).open("rb", buffering=1 << 20) as segment:
                segment.seek(start)
                while pos < stop and len(batch.samples) < max_samples:
                    length, _, count, _ = FRAME.unpack(segment.read(FRAME.size))
                    if batch.samples and len(batch.samples) + count > max_samples:
                        break
                    samples, points = decode_record(segment.read(length))
                    batch.samples += samples
                    batch.points += points
                    pos += FRAME.size + length
            batch.end = (seg_id, pos)
            if pos < stop:
                break
        return batch

    def ack(self, batch: Batch) -> None:
        """The historian has `batch`: its records may go."""
        self.stats.samples -= len(batch.samples)
        self.stats.points -= len(batch.points)
        if batch.from_memory:
            self._memory_held -= batch.from_memory
            self._room.set()
        if batch.end is not None and batch.end > self._cursor:
            self._cursor = batch.end
            self._report_bytes()
            self._state_dirty = True
            self._work.set()


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
