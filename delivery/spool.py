"""A durable spool between the connectors and the historian: store and forward, nothing lost.

Every batch a connector hands over is appended to a segment file and fsync'd (group commit: one
fsync for every record that arrived meanwhile, at most one per `commit_interval_s`) before `put`
returns, so a batch the connector counts as taken survives a crash or a power loss. The writer
reads records in order and acknowledges them once the historian has taken them; the cursor (the
first unacknowledged position) is kept in `state.json`, and segments wholly behind it are
deleted. On start the spool replays everything after the cursor: delivery is at least once, and
a replay overwrites the same series and timestamp in the historian, so it adds no duplicates.

Each record is framed with a marker, its length, counts and CRCs (delivery.spool_format) and
checked whenever it is read. A damaged record costs only itself: on start and while running the
reader resynchronises on the next intact record, copies the unreadable bytes to `quarantine/`,
and counts what was lost (bytes, and samples where a header or the segment's totals say how
many) in persistent counters that the state file, /health and the `connector` measurement show.
A tail torn by a crash while it was being written (its `put` never returned) is cut on start.
The spool is bounded: past `max_bytes` the oldest segment that is not being delivered is dropped
whole, and its samples and points are counted the same way, never silently.

A folder that fails while running (disk full, turned read-only) does not stop collection: the
spool holds records in memory, bounded by `memory_samples` (past it the oldest are dropped and
counted), says so loudly, and retries the folder with backoff until it works again. Without a
folder at all, records are held in memory and `put` waits while the historian is behind.
Folders are created 0700 and files 0600: plant data is for its owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.backoff import Backoff
from core.private_files import FILE_MODE, FOLDER_MODE
from core.sample import Point, Sample, SampleBatch
from delivery import spool_format as fmt

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "lock"
QUARANTINE = "quarantine"
QUARANTINE_SHARE = 16  # the quarantine copies stay under max_bytes / this
SEGMENT_SUFFIX = ".seg"
DEFAULT_MAX_BYTES = 1 << 30
HEADER = fmt.SEGMENT_HEADER_SIZE
# The active segment is sealed once it holds this much while the reader is in it (the
# historian keeps up), so delivered data leaves the disk early: a small disk does not fill up
# with delivered records waiting for their segment to reach `segment_bytes`.
RELEASE_BYTES = 1 << 20
# The loss counters kept in state.json, and recalled with `remember`.
LOSS_COUNTERS = (
    "dropped_samples",
    "dropped_points",
    "unreadable_bytes",
    "unreadable_samples",
    "unknown_loss_bytes",
)
LOG_DROPS_EVERY_S = 10.0

Position = tuple[int, int]  # (segment id, byte offset)


class SpoolError(Exception):
    """The spool folder cannot be used; the message says which folder and why.

    `memory_helps` says whether running with --memory-only-on-spool-error gets around it."""

    def __init__(self, message: str, *, memory_helps: bool = True) -> None:
        super().__init__(message)
        self.memory_helps = memory_helps


@dataclass(slots=True)
class SpoolStats:
    """What the spool holds and has lost, for health points, /health and the live status.

    `dropped_samples` counts every sample lost in the spool: dropped when it was full, or
    unreadable on disk; `unreadable_bytes` and `unreadable_samples` say how much of it was
    damage. A damaged record header hides how many samples its record held; they are counted
    from its payload if that still decodes, else `unknown_loss_bytes` holds the bytes of
    records lost with an unknown number of samples ("unknown samples in N bytes")."""

    folder: str = ""
    bytes: int = 0
    samples: int = 0
    points: int = 0
    spooled_samples: int = 0
    dropped_samples: int = 0
    dropped_points: int = 0
    unreadable_bytes: int = 0
    unreadable_samples: int = 0
    unknown_loss_bytes: int = 0
    memory_only: bool = False
    last_error: str = ""

    def remember(self, losses: Mapping[str, int]) -> None:
        """Take loss counters kept elsewhere (state.json, or the historian's `connector`
        points when the folder could not save them) where they are higher than ours: the
        counters only grow, so the higher count is the one that has seen more."""
        for name in LOSS_COUNTERS:
            if losses.get(name, 0) > getattr(self, name):
                setattr(self, name, losses[name])


@dataclass(slots=True)
class Batch:
    """Records read from the spool, in order; acknowledge it once the historian has it."""

    samples: SampleBatch = field(default_factory=SampleBatch)
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
    """A segment's totals; `read_*` count what the reader has met of them (records read or
    lost), so that once it reaches the end, what a damaged header hid is known too."""

    id: int
    size: int = HEADER
    samples: int = 0
    points: int = 0
    read_samples: int = 0
    read_points: int = 0
    hidden_loss: bool = False


@dataclass(slots=True)
class _Group:
    """Records handed over since the last commit, with the callers waiting for it."""

    frames: list[bytes] = field(default_factory=list)
    records: list[tuple[Sequence[Sample], list[Point]]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    nbytes: int = 0
    samples: int = 0
    points: int = 0


@dataclass(slots=True)
class _Damage:
    """An unreadable stretch met by the reader (already copied to the quarantine folder)."""

    seg_id: int
    start: int
    nbytes: int
    samples: int | None
    points: int | None
    copy: str


@dataclass(slots=True)
class _Read:
    batch: Batch
    damage: list[_Damage]
    met: dict[int, tuple[int, int, int]]  # segment -> samples, points met, position reached


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
        retry_min_s: float = 1.0,
        retry_max_s: float = 10.0,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or min(8 << 20, max(4096, max_bytes // 16))
        self.commit_interval_s = commit_interval_s
        self.memory_samples = memory_samples
        self.memory_fallback = memory_fallback
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.stats = SpoolStats(folder=str(self.folder or ""), memory_only=self.folder is None)
        self._segments: dict[int, _Segment] = {}
        self._active = _Segment(0)
        self._fd = -1
        self._lock: IO[bytes] | None = None
        self._cursor: Position = (0, 0)
        self._read_pos: Position = (0, 0)
        self._reading_upto = -1
        self._doomed: list[int] = []
        self._counted: set[Position] = set()  # damage already counted (found while running)
        self._rewrites: list[tuple[Path, bytes | None]] = []
        self._state_dirty = False
        self._group = _Group()
        self._memory: deque[tuple[Sequence[Sample], list[Point]]] = deque()
        self._memory_held = 0
        self._work = asyncio.Event()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self._last_drop_log = -LOG_DROPS_EVERY_S
        self._disk_bytes = 0
        self._disk_open = False
        self._opened = False

    # -- opening and closing ------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the folder, check every record, find what is left to replay. A folder that
        cannot be used is a SpoolError, or memory-only mode (logged) if `memory_fallback`
        allows."""
        if self._opened:
            return
        self._opened = True
        if self.folder is None:
            return
        try:
            await asyncio.to_thread(self._open_disk)
        except fmt.UnknownFormat as exc:
            self._release()
            raise SpoolError(
                f"the spool folder {self.folder} has a segment {exc}: use the shopfloor that "
                "wrote it to deliver it, or give this one another --spool folder",
                memory_helps=False,
            ) from None
        except OSError as exc:
            self._release()
            message = f"cannot use the spool folder {self.folder}: {exc.strerror or exc}"
            if not self.memory_fallback:
                raise SpoolError(message) from None
            self._go_memory_only(
                f"{message}; continuing in memory only: what is not yet delivered is lost if "
                "this process stops"
            )
            return
        self._disk_open = True
        if self.stats.samples or self.stats.points:
            log.warning(
                "spool %s: replaying %d samples and %d points not yet delivered",
                self.folder,
                self.stats.samples,
                self.stats.points,
            )

    def _open_disk(self) -> None:
        assert self.folder is not None
        self.folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        self._lock = os.fdopen(_create(self.folder / LOCK_FILE, os.O_WRONLY | os.O_APPEND), "ab")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release()
            raise SpoolError(
                f"the spool folder {self.folder} is in use by another shopfloor process; "
                "give each process its own --spool folder",
                memory_helps=False,
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
            segment = self._scan(seg_id, newest=seg_id == ids[-1])
            if segment.size > HEADER:
                self._segments[seg_id] = segment
            elif not any(path == self._segment_path(seg_id) for path, _ in self._rewrites):
                self._segment_path(seg_id).unlink()
        self._counted = {c for c in self._counted if c[0] in self._segments}
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
        # The counts and cursor first, then the repaired segments: a crash in between replays
        # (the historian takes a replay as the same points) rather than skips.
        self._save_state(self._state())
        self._apply_rewrites()

    def _load_state(self) -> None:
        assert self.folder is not None
        path = self.folder / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            self._cursor = (int(state["cursor"][0]), int(state["cursor"][1]))
            self.stats.remember({name: int(state.get(name, 0)) for name in LOSS_COUNTERS})
            self._doomed = [int(i) for i in state.get("doomed", [])]
            self._counted = {(int(a), int(b)) for a, b in state.get("counted", [])}
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("spool %s: unreadable %s (%s); replaying everything", path, STATE_FILE, exc)

    def _scan(self, seg_id: int, *, newest: bool) -> _Segment:
        """Check every record of a segment from the cursor on; quarantine and count what cannot
        be read, keep every intact record, cut a tail torn while being written."""
        path = self._segment_path(seg_id)
        data = path.read_bytes()
        skip_to = self._cursor[1] if seg_id == self._cursor[0] else 0
        if fmt.is_legacy(data):
            return self._convert_legacy(seg_id, data, skip_to, newest=newest)
        start = max(skip_to, HEADER) if fmt.has_header(data) else skip_to
        kept: list[fmt.Span] = []
        damaged = False
        for span in fmt.spans(data, start):
            if span.kind == fmt.RECORD:
                kept.append(span)
            elif span.kind == fmt.TORN and newest:
                self._cut_torn(path, len(data) - span.start)
            else:
                damaged = True
                self._lose_on_open(seg_id, span.start, data[span.start : span.end], span)
        segment = _Segment(seg_id)
        segment.samples = sum(s.samples or 0 for s in kept)
        segment.points = sum(s.points or 0 for s in kept)
        if damaged:
            content = fmt.segment_header(seg_id) + b"".join(data[s.start : s.end] for s in kept)
            self._rewrite(seg_id, content if kept else None)
            segment.size = len(content)
        else:
            segment.size = kept[-1].end if kept else start
            if segment.size < len(data):
                os.truncate(path, segment.size)
        self.stats.samples += segment.samples
        self.stats.points += segment.points
        return segment

    def _convert_legacy(self, seg_id: int, data: bytes, skip_to: int, *, newest: bool) -> _Segment:
        """A format 1 segment, rewritten in format 2 (what its cursor had not passed)."""
        path = self._segment_path(seg_id)
        records, bad_from = fmt.legacy_records(data)
        segment, frames = _Segment(seg_id), [fmt.segment_header(seg_id)]
        for offset, payload in records:
            if offset < skip_to:
                continue
            try:
                samples, points = fmt.decode_record(payload)
            except fmt.DECODE_ERRORS:
                self._lose_on_open(seg_id, offset, payload, fmt.Span(fmt.CORRUPT, 0, 0))
                continue
            frames.append(fmt.frame(samples, points))
            segment.samples += len(samples)
            segment.points += len(points)
        tail = data[bad_from:]
        if tail and newest and _legacy_torn(tail):
            self._cut_torn(path, len(tail))
        elif tail:
            self._lose_on_open(seg_id, bad_from, tail, fmt.Span(fmt.CORRUPT, 0, 0))
        log.warning("spool %s: converted from spool format 1 to format 2", path)
        content = b"".join(frames)
        self._rewrite(seg_id, content if len(frames) > 1 else None)
        segment.size = len(content)
        self.stats.samples += segment.samples
        self.stats.points += segment.points
        return segment

    def _cut_torn(self, path: Path, nbytes: int) -> None:
        log.warning(
            "spool %s: cut a torn tail of %d bytes (the process or machine stopped while "
            "writing it, before the records in it were acknowledged to their input)",
            path,
            nbytes,
        )

    def _lose_on_open(self, seg_id: int, start: int, raw: bytes, span: fmt.Span) -> None:
        """Count a damaged stretch found on opening a stopped spool. Its samples are known
        from an intact header or a payload that still decodes; else (no segment totals
        survive a stop) they are counted as unknown samples in so many bytes."""
        copy = self._quarantine(seg_id, start, raw)
        if (seg_id, start) in self._counted:
            return  # found and counted while running, before the last stop
        self._count_damage(_Damage(seg_id, start, len(raw), span.samples, span.points, copy))
        if span.samples is None:
            self.stats.unknown_loss_bytes += len(raw)
            self.stats.last_error = (
                f"spool damage: unknown samples in {self.stats.unknown_loss_bytes} bytes "
                f"({self.stats.unreadable_samples} samples known lost)"
            )

    def _rewrite(self, seg_id: int, content: bytes | None) -> None:
        """Prepare a segment's repaired content (None: nothing intact left) for after the
        state is saved. The cursor of a repaired segment is its first record."""
        path = self._segment_path(seg_id)
        if content is not None:
            tmp = path.with_suffix(".tmp")
            fd = _create(tmp, os.O_WRONLY | os.O_TRUNC)
            try:
                _write_all(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
        self._rewrites.append((path, content))
        self._counted = {c for c in self._counted if c[0] != seg_id}
        if self._cursor[0] == seg_id:
            self._cursor = (seg_id, HEADER)

    def _apply_rewrites(self) -> None:
        for path, content in self._rewrites:
            if content is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(path.with_suffix(".tmp"), path)
        if self._rewrites:
            self._fsync_folder()
        self._rewrites = []

    def _quarantine(self, seg_id: int, start: int, raw: bytes) -> str:
        """Copy unreadable bytes aside for whoever wants to look; the path, or why not.

        The copies stay under 1/16 of the spool's size, so a disk that keeps failing cannot
        fill the spool's file system with them (the loss is counted either way)."""
        assert self.folder is not None
        folder = self.folder / QUARANTINE
        path = folder / f"{seg_id:016d}-{start:010d}.bad"
        limit = self.max_bytes // QUARANTINE_SHARE
        try:
            kept = sum(p.stat().st_size for p in folder.glob("*.bad") if p != path)
            if kept + len(raw) > limit:
                return (
                    f"not kept: {folder} already holds {kept} bytes, its limit is {limit} "
                    "(1/16 of the spool's size); delete what you have looked at"
                )
            folder.mkdir(mode=FOLDER_MODE, exist_ok=True)
            fd = _create(path, os.O_WRONLY | os.O_TRUNC)
            try:
                _write_all(fd, raw)
            finally:
                os.close(fd)
        except OSError as exc:
            return f"not kept ({exc.strerror or exc})"
        return f"copied to {path}"

    def _count_damage(self, damage: _Damage) -> None:
        """Add unreadable bytes (and samples, where known) to the persistent counters."""
        self.stats.unreadable_bytes += damage.nbytes
        if damage.samples is not None:
            self._count_lost(damage.samples, damage.points or 0)
            lost = f"{damage.samples} samples and {damage.points} points lost"
        else:
            lost = "its record header is damaged, so how many samples it held is not known"
        self.stats.last_error = (
            f"spool damage: {self.stats.unreadable_bytes} bytes unreadable so far "
            f"({self.stats.unreadable_samples} samples known lost)"
        )
        log.error(
            "spool %s: %d unreadable bytes at offset %d of segment %d (%s); %s; the intact "
            "records around them are kept",
            self.folder,
            damage.nbytes,
            damage.start,
            damage.seg_id,
            damage.copy,
            lost,
        )

    def _count_lost(self, samples: int, points: int) -> None:
        self.stats.unreadable_samples += samples
        self.stats.dropped_samples += samples
        self.stats.dropped_points += points

    def _segment_path(self, seg_id: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{seg_id:016d}{SEGMENT_SUFFIX}"

    def _open_segment(self, seg_id: int) -> int:
        """The segment's file for appending; a new one starts with its header."""
        path = self._segment_path(seg_id)
        fd = _create(path, os.O_WRONLY | os.O_APPEND)
        new = False
        try:
            if new := os.fstat(fd).st_size == 0:
                _write_all(fd, fmt.segment_header(seg_id))
                os.fsync(fd)
            self._fsync_folder()
        except OSError:
            os.close(fd)
            if new:  # not half a header left behind for the next attempt to append to
                path.unlink(missing_ok=True)
            raise
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
            "format": fmt.FORMAT_VERSION,
            "cursor": list(self._cursor),
            **{name: getattr(self.stats, name) for name in LOSS_COUNTERS},
            "doomed": list(self._doomed),
            "counted": sorted(self._counted),
        }

    def _save_state(self, state: dict[str, Any]) -> None:
        """Replace state.json atomically: write a temporary file, fsync, rename, fsync the
        folder; a crash leaves the old state or the new one, never half of one."""
        assert self.folder is not None
        tmp = self.folder / (STATE_FILE + ".tmp")
        fd = _create(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, json.dumps(state).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.folder / STATE_FILE)
        self._fsync_folder()

    async def close(self) -> None:
        """Save the cursor, close the files and unlock the folder."""
        if self._disk_open:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._save_state, self._state())
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- taking records -----------------------------------------------------------------------

    async def put(self, samples: Sequence[Sample], points: Sequence[Point] = ()) -> None:
        """Take a batch; on disk, returns once it is fsync'd. In memory, see the module doc."""
        if self.stats.memory_only:
            await self._put_memory(_held(samples), list(points))
            return
        waiter = asyncio.get_running_loop().create_future()
        record = fmt.frame(samples, points)
        group = self._group
        group.frames.append(record)
        group.records.append((_held(samples), list(points)))
        group.waiters.append(waiter)
        group.nbytes += len(record)
        group.samples += len(samples)
        group.points += len(points)
        self._work.set()
        await asyncio.shield(waiter)

    async def _put_memory(self, samples: Sequence[Sample], points: list[Point]) -> None:
        """Without a folder, wait for room; with a failed one, keep collecting and drop the
        oldest past the bound (counted): a plant wants the newest data during a disk fault."""
        while self.folder is None and self._memory_held >= self.memory_samples:
            self._room.clear()
            await self._room.wait()
        self._hold(samples, points)
        while self.folder is not None and self._memory_held > self.memory_samples:
            old_samples, old_points = self._memory.popleft()
            self._memory_held -= len(old_samples)
            self.stats.samples -= len(old_samples)
            self.stats.points -= len(old_points)
            self.stats.dropped_samples += len(old_samples)
            self.stats.dropped_points += len(old_points)
            self._log_memory_drop()

    def _hold(self, samples: Sequence[Sample], points: list[Point]) -> None:
        self._memory.append((samples, points))
        self._memory_held += len(samples)
        self.stats.samples += len(samples)
        self.stats.points += len(points)
        self.stats.spooled_samples += len(samples)
        self._arrived.set()

    def _log_memory_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log < LOG_DROPS_EVERY_S:
            return
        self._last_drop_log = now
        log.error(
            "spool %s failed and the memory buffer is full (%d samples): dropping the oldest "
            "(%d samples dropped in all)",
            self.folder,
            self.memory_samples,
            self.stats.dropped_samples,
        )

    # -- committing ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit groups until cancelled; then commit what is left. While the folder has
        failed, retry it with backoff."""
        await self.open()
        loop = asyncio.get_running_loop()
        retry = Backoff(self.retry_min_s, self.retry_max_s)
        try:
            while True:
                if self.stats.memory_only and self._disk_open:
                    await asyncio.sleep(retry.next())
                    if await self._recover():
                        retry.reset()
                    continue
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
                await self._committing
            await self._commit()
            raise

    async def _commit(self) -> None:
        if self.stats.memory_only:
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
        size = self._active.size
        keeping_up = self._cursor[0] == self._active.id and size >= RELEASE_BYTES
        rotate = size > HEADER and (size + group.nbytes > self.segment_bytes or keeping_up)
        new_id = self._active.id + 1 if rotate else None
        self._fd = await asyncio.to_thread(self._write, b"".join(group.frames), new_id)
        if new_id is not None:
            self._active = self._segments[new_id] = _Segment(new_id)
            self._disk_bytes += HEADER
        self._added(self._active, group.nbytes, group.samples, group.points)
        self.stats.spooled_samples += group.samples

    def _added(self, segment: _Segment, nbytes: int, samples: int, points: int) -> None:
        segment.size += nbytes
        segment.samples += samples
        segment.points += points
        self._disk_bytes += nbytes
        self.stats.samples += samples
        self.stats.points += points

    def _write(self, data: bytes, new_id: int | None) -> int:
        """Append and fsync (in a thread); with `new_id`, seal the active segment first."""
        fd = self._fd
        if new_id is not None:
            os.close(fd)
            fd = self._fd = -1
            fd = self._open_segment(new_id)
        _write_all(fd, data)
        os.fsync(fd)
        return fd

    def _enforce_limit(self) -> bool:
        """Drop whole segments, oldest first, that nobody is delivering, until under the limit."""
        dropped = False
        while self._disk_bytes > self.max_bytes:
            untouched = self._read_pos[1] <= HEADER and self._cursor == self._read_pos
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
        gone = {s.id for s in done} | set(doomed)
        self._counted = {c for c in self._counted if c[0] not in gone}
        self._doomed = [i for i in self._doomed if i not in doomed]
        self._state_dirty = self._state_dirty or bool(doomed)

    def _disk_failed(self, exc: OSError, group: _Group) -> None:
        """The folder failed while running: cut what this write left half-done (if the disk
        lets us), then go on in memory and retry the folder."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._active.size)
        self._go_memory_only(
            f"the spool folder {self.folder} failed: {exc.strerror or exc}; holding up to "
            f"{self.memory_samples} samples in memory (lost if this process stops) and "
            "retrying the folder",
            group,
        )

    def _go_memory_only(self, message: str, failed: _Group | None = None) -> None:
        """From now on hold records in memory, those not yet on disk first, in order."""
        self.stats.memory_only = True
        self.stats.last_error = message
        log.error("%s", message)
        for group in (failed, self._group):
            if group is None:
                continue
            for samples, points in group.records:
                self._hold(samples, points)
            for waiter in group.waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._group = _Group()
        self._arrived.set()

    async def _recover(self) -> bool:
        """Try the failed folder again: a new segment with what memory holds, fsync'd."""
        with contextlib.suppress(OSError):  # what was delivered meanwhile makes room
            await self._delete_done()
        held = list(self._memory)
        self._memory.clear()  # not to be taken while they are written
        new_id = self._active.id + 1
        data = b"".join(fmt.frame(samples, points) for samples, points in held)
        try:
            fd = await asyncio.to_thread(self._write_recovered, new_id, data)
        except OSError as exc:
            self._memory.extendleft(reversed(held))
            log.debug("spool %s still fails: %s", self.folder, exc.strerror or exc)
            return False
        except asyncio.CancelledError:  # stopping: they are delivered from memory, if at all
            self._memory.extendleft(reversed(held))
            raise
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = fd
        self._active = self._segments[new_id] = _Segment(new_id)
        self._disk_bytes += HEADER
        samples = sum(len(s) for s, _ in held)
        self.stats.samples -= samples  # counted again by _added: they move, they are not new
        self.stats.points -= sum(len(p) for _, p in held)
        self._added(self._active, len(data), samples, sum(len(p) for _, p in held))
        self._memory_held -= samples
        self._room.set()
        self.stats.memory_only = False
        self.stats.last_error = ""
        self._state_dirty = True
        self._work.set()
        self._arrived.set()
        log.warning(
            "spool %s works again: the %d samples held in memory are on disk; back to normal",
            self.folder,
            samples,
        )
        return True

    def _write_recovered(self, new_id: int, data: bytes) -> int:
        fd = self._open_segment(new_id)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self._segment_path(new_id).unlink(missing_ok=True)
            raise
        return fd

    # -- delivering ---------------------------------------------------------------------------

    async def arrival(self) -> None:
        """Wait until records may have arrived since the last `take`."""
        await self._arrived.wait()

    async def take(self, max_samples: int) -> Batch:
        """The next intact records not yet read, up to `max_samples` (at least one record if
        any); damaged ones are quarantined and counted. Safe to cancel: what was not returned
        is read again."""
        self._arrived.clear()
        plan = self._plan()
        batch = Batch()
        if plan:
            self._reading_upto = plan[-1][0]
            try:
                read = await asyncio.to_thread(self._read_disk, plan, max_samples)
            except OSError as exc:
                raise SpoolError(f"cannot read the spool folder {self.folder}: {exc}") from None
            except fmt.UnknownFormat as exc:
                raise SpoolError(
                    f"the spool folder {self.folder} holds {exc}", memory_helps=False
                ) from None
            finally:
                self._reading_upto = -1
            batch = read.batch
            self._account(read)
            assert batch.end is not None
            self._read_pos = batch.end
        while self._memory and len(batch.samples) < max_samples:
            samples, points = self._memory.popleft()
            batch.samples += samples
            batch.points += points
            batch.from_memory += len(samples)
        if self._memory or self._plan():  # more is there: a reader waiting must not wait
            self._arrived.set()
        return batch

    def _plan(self) -> list[tuple[int, int, int]]:
        """(segment, from, to) ranges of committed records after the read position."""
        seg_id, offset = self._read_pos
        plan = []
        for segment in self._segments.values():
            start = max(offset if segment.id == seg_id else 0, HEADER)
            if segment.id >= seg_id and segment.size > start:
                plan.append((segment.id, start, segment.size))
        return plan

    def _read_disk(self, plan: list[tuple[int, int, int]], max_samples: int) -> _Read:
        """Read and check records (in a thread); copy damaged stretches to the quarantine."""
        read = _Read(Batch(), [], {})
        for seg_id, start, stop in plan:
            pos, met_samples, met_points = start, 0, 0
            with self._segment_path(seg_id).open("rb", buffering=1 << 20) as segment:
                segment.seek(start)
                while pos < stop and len(read.batch.samples) < max_samples:
                    head = fmt.header_at(segment.read(fmt.RECORD_HEADER_SIZE), 0)
                    end = pos + fmt.RECORD_HEADER_SIZE + (head.length if head else 0)
                    if head is not None and end <= stop:
                        if (
                            read.batch.samples
                            and len(read.batch.samples) + head.samples > max_samples
                        ):
                            break
                        met_samples += head.samples
                        met_points += head.points
                        if self._read_record(segment.read(head.length), head, read.batch):
                            pos = end
                            continue
                    else:  # no intact header here: resynchronise on the next one
                        segment.seek(pos)
                        rest = segment.read(stop - pos)
                        found = fmt.next_header(rest, 1)
                        end = stop if found is None else pos + found
                        head = None
                    segment.seek(pos)
                    raw = segment.read(end - pos)
                    copy = self._quarantine(seg_id, pos, raw)
                    read.damage.append(
                        _Damage(
                            seg_id,
                            pos,
                            len(raw),
                            head.samples if head else None,
                            head.points if head else None,
                            copy,
                        )
                    )
                    pos = end
                    segment.seek(pos)
            read.met[seg_id] = (met_samples, met_points, pos)
            read.batch.end = (seg_id, pos)
            if pos < stop:
                break
        return read

    @staticmethod
    def _read_record(payload: bytes, head: fmt.Header, batch: Batch) -> bool:
        """Add one record to `batch` if its payload checks out."""
        if len(payload) != head.length or zlib.crc32(payload) != head.crc:
            return False
        try:
            samples, points = fmt.decode(payload, head)
        except fmt.DECODE_ERRORS:
            return False
        batch.samples += samples
        batch.points += points
        return True

    def _account(self, read: _Read) -> None:
        """Count what the reader found damaged; once it has met a whole segment, what a damaged
        header hid is the segment's total less what was met."""
        for damage in read.damage:
            self._counted.add((damage.seg_id, damage.start))
            self._count_damage(damage)
            if damage.samples is not None:
                self.stats.samples -= damage.samples
                self.stats.points -= damage.points or 0
            elif damage.seg_id in self._segments:
                self._segments[damage.seg_id].hidden_loss = True
            self._state_dirty = True
            self._work.set()
        for seg_id, (samples, points, pos) in read.met.items():
            segment = self._segments.get(seg_id)
            if segment is None:
                continue
            segment.read_samples += samples
            segment.read_points += points
            if segment.hidden_loss and pos >= segment.size:
                segment.hidden_loss = False
                hidden = segment.samples - segment.read_samples
                hidden_points = segment.points - segment.read_points
                self._count_lost(hidden, hidden_points)
                self.stats.samples -= hidden
                self.stats.points -= hidden_points
                log.error(
                    "spool %s: the damaged stretch of segment %d held %d samples and %d points",
                    self.folder,
                    seg_id,
                    hidden,
                    hidden_points,
                )

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


def _held(samples: Sequence[Sample]) -> Sequence[Sample]:
    """What the spool keeps of a caller's samples: a SampleBatch as it is (its columns are
    the caller's no more once handed over), anything else copied into a list."""
    return samples if isinstance(samples, SampleBatch) else list(samples)


def _create(path: Path, flags: int) -> int:
    """Open (creating it 0600) a file of the spool."""
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _legacy_torn(tail: bytes) -> bool:
    """Whether a format 1 tail is one record cut short (a crash while writing it)."""
    if len(tail) < fmt.LEGACY_FRAME.size:
        return True
    length = fmt.LEGACY_FRAME.unpack_from(tail)[0]
    return fmt.LEGACY_FRAME.size + length > len(tail)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
