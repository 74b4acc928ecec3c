"""Batches samples from every input through the spool and writes them to the historian.

Connectors hand over small batches (one poll cycle, one publish cycle); InfluxDB and SQLite want
thousands of points per request. The writer sits between them. With a durable spool
(delivery.spool) a connector's batch is on disk before `put` returns, and it leaves the spool
only once the historian has acknowledged it; without one, memory is bounded and a slow
historian pushes back on the connectors. With a durable spool the historian pushes back too
while it takes writes but more slowly than the inputs hand over: past `max_pending` samples not
yet delivered, `put` returns only once the writer has caught up (the batch is in the spool
already, so a caller that stops waiting loses nothing); during an outage (writes failing) it
does not wait, and the spool buffers on disk. A write that may succeed later is retried with
exponential backoff and jitter (a historian set up wrong, with a bad token or no database, is
such a case: see `core.storage.retryable_status`); one that never will (a malformed point) is
split until the bad records are isolated, so the good data behind them still goes in, and the
rest is counted as rejected and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.backoff import Backoff
from core.sample import Point, Sample
from core.storage import HistorianError, Sink
from delivery.spool import Batch, Spool, SpoolError, SpoolStats

log = logging.getLogger(__name__)

Part = tuple[Sequence[Sample], list[Point]]


@dataclass(slots=True)
class WriterStats:
    """What the writer has done, for status displays, /health and the `connector` measurement."""

    spool: SpoolStats
    samples_written: int = 0
    points_written: int = 0
    rejected: int = 0
    retries: int = 0
    last_error: str = ""
    historian_ok: bool = True

    @property
    def pending(self) -> int:
        """Samples taken but not yet acknowledged by the historian."""
        return self.spool.samples


class Writer(Protocol):
    """What the agent, the live status and /health need of a writer: one `HistorianWriter`, or a
    `Fanout` of several."""

    stats: WriterStats

    async def open(self) -> None:
        """Get ready to take batches (recover the spool); fails before anything runs."""
        ...

    async def put(self, samples: Sequence[Sample]) -> None:
        """Take a batch of samples; returns once it is durable (with a spool)."""
        ...

    async def put_points(self, points: Sequence[Point]) -> None:
        """Take points of any measurement, with the same guarantee."""
        ...

    async def run(self) -> None:
        """Deliver until cancelled, then write out what it holds."""
        ...


class HistorianWriter:
    """Takes batches into the spool and writes them out, retrying what can succeed later."""

    def __init__(
        self,
        historian: Sink,
        *,
        spool: Spool | None = None,
        batch_size: int = 5000,
        flush_interval_s: float = 0.5,
        max_pending: int = 100_000,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        drain_timeout_s: float = 10.0,
        split_budget: int = 64,
    ) -> None:
        self.historian = historian
        self.spool = spool or Spool(None, memory_samples=max_pending)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.drain_timeout_s = drain_timeout_s
        self.split_budget = split_budget
        self.stats = WriterStats(self.spool.stats)
        self._batch = Batch()
        # writes sent and not yet acknowledged, oldest first, each with its batch
        self._max_in_flight = max(1, historian.writes_in_flight)
        self._in_flight: deque[tuple[asyncio.Task[None], Batch]] = deque()
        self._failing_since: float | None = None
        self.max_pending = max_pending
        self._delivering = False  # run() is delivering: a put may wait for it to catch up
        self._caught_up = asyncio.Event()

    async def open(self) -> None:
        """Open the spool now, so that an unusable folder stops a command before it starts."""
        await self.spool.open()

    async def put(self, samples: Sequence[Sample]) -> None:
        """Hand over samples; returns once they are in the spool (on disk, if it has a folder)
        and, while the historian takes writes, no more than `max_pending` wait for it."""
        if samples:
            await self.spool.put(samples)
            while self._behind():
                self._caught_up.clear()
                await self._caught_up.wait()

    def _behind(self) -> bool:
        stats = self.stats
        return (
            self._delivering
            and stats.historian_ok
            and not stats.spool.memory_only
            and stats.pending > self.max_pending
        )

    async def put_points(self, points: Sequence[Point]) -> None:
        """Hand over points of the other measurements (events, connector health)."""
        if points:
            await self.spool.put((), points)

    async def run(self) -> None:
        """Deliver until cancelled; on cancellation, commit and write what is held, then stop.
        A spool folder that fails to write is run around in memory by the spool; one that cannot
        be read ends the run with SpoolError."""
        await self.spool.open()
        committer = asyncio.create_task(self.spool.run(), name="spool-commit")
        self._delivering = True
        try:
            while True:
                await self._gather()
                self._send()
                while len(self._in_flight) >= self._max_in_flight:
                    await self._oldest_write()
        except asyncio.CancelledError:
            self._stop_holding_back()
            await _stop(committer)  # the final commit: every put() waiting returns
            await self._drain()
            raise
        finally:
            self._stop_holding_back()
            await _stop(committer)
            writes = [write for write, _ in self._in_flight]  # left if the drain was cut short
            for write in writes:
                write.cancel()
            await asyncio.gather(*writes, return_exceptions=True)
            self._in_flight.clear()
            await self.spool.close()

    async def _gather(self) -> None:
        """Wait for records, then gather more until the batch is full or the flush interval
        ends. The batch lives on `self`, so a cancellation mid-gather loses nothing."""
        batch = self._batch
        while not (batch.samples or batch.points):
            batch.extend(await self.spool.take(self.batch_size))
            if not (batch.samples or batch.points):
                await self.spool.arrival()
        deadline = asyncio.get_running_loop().time() + self.flush_interval_s
        while len(batch.samples) < self.batch_size:
            try:
                async with asyncio.timeout_at(deadline):
                    await self.spool.arrival()
            except TimeoutError:
                return
            batch.extend(await self.spool.take(self.batch_size - len(batch.samples)))

    def _send(self) -> None:
        """Start writing the gathered batch; it is acknowledged in the spool only once it and
        every batch sent before it are in (acks in order: the spool's cursor never passes a
        batch still being written or retried)."""
        batch, self._batch = self._batch, Batch()
        write = asyncio.create_task(self._write_batch(batch.samples, batch.points))
        self._in_flight.append((write, batch))
        write.add_done_callback(self._ack_done)

    def _ack_done(self, _: object = None) -> None:
        """Acknowledge the oldest writes that are done, in order; one that failed (a bug, not
        a historian error: those are retried or rejected inside) is left for run() to raise."""
        in_flight = self._in_flight
        while in_flight and (write := in_flight[0][0]).done() and not write.cancelled():
            if write.exception() is not None:
                return
            self.spool.ack(in_flight.popleft()[1])
            self._caught_up.set()

    async def _oldest_write(self) -> None:
        """Wait for the oldest write (a cancelled wait leaves it running) and acknowledge it."""
        await asyncio.shield(self._in_flight[0][0])
        self._ack_done()

    def _stop_holding_back(self) -> None:
        self._delivering = False
        self._caught_up.set()

    async def _drain(self) -> None:
        """On shutdown: the writes in flight, the batch in hand and everything readable, within
        the drain timeout."""
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                while True:
                    while self._in_flight:
                        await self._oldest_write()
                    self._batch.extend(await self.spool.take(self.batch_size))
                    if not (self._batch.samples or self._batch.points):
                        return
                    self._send()
        except TimeoutError:
            where = (
                "lost (memory only)"
                if self.stats.spool.memory_only
                else f"kept in the spool {self.stats.spool.folder} for the next start"
            )
            log.error(
                "shutdown: %d samples and %d points not delivered within %.0f s are %s",
                self.stats.spool.samples,
                self.stats.spool.points,
                self.drain_timeout_s,
                where,
            )
        except SpoolError as exc:
            log.error("shutdown: %s", exc)

    async def _write_batch(self, samples: Sequence[Sample], points: list[Point]) -> None:
        """Write everything, retrying with backoff what may succeed later and splitting what
        never will until the bad records are isolated (at most `split_budget` splits; then
        each part left is tried once and rejected whole)."""
        parts: tuple[Part, ...] = ((samples, []), ([], points))
        todo: deque[Part] = deque(p for p in parts if p[0] or p[1])
        splits_left = self.split_budget
        backoff = Backoff(self.retry_min_s, self.retry_max_s)
        rejected = 0
        while todo:
            part = todo[0]
            try:
                await self._write(part)
            except HistorianError as exc:
                self.stats.last_error = str(exc)
                self.stats.historian_ok = not exc.retryable
                self._caught_up.set()  # an outage: puts stop waiting, the spool buffers
                if exc.retryable:
                    await self._back_off(backoff.next(), exc)
                    continue
                todo.popleft()
                halves = _halves(part) if splits_left > 0 else []
                if halves:
                    splits_left -= 1
                    todo.extendleft(reversed(halves))
                else:
                    rejected += len(part[0]) + len(part[1])
                continue
            todo.popleft()
            backoff.reset()
            self._historian_back()
        if rejected:
            self.stats.rejected += rejected
            log.error(
                "historian rejected %d of %d records; they are not stored: %s",
                rejected,
                len(samples) + len(points),
                self.stats.last_error,
            )

    async def _write(self, part: Part) -> None:
        samples, points = part
        if samples:
            await self.historian.write_samples(samples)
            self.stats.samples_written += len(samples)
        else:
            await self.historian.write_points(points)
            self.stats.points_written += len(points)

    async def _back_off(self, wait: float, exc: HistorianError) -> None:
        self.stats.retries += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        log.warning("historian write failed, retrying in %.2f s: %s", wait, exc)
        await asyncio.sleep(wait)

    def _historian_back(self) -> None:
        """A write went in: after failures, say so once and clear the stale error."""
        self.stats.historian_ok = True
        if self._failing_since is None:
            return
        log.warning(
            "historian %s is back after %.0f s; delivering what the spool holds",
            self.historian.describe(),
            time.monotonic() - self._failing_since,
        )
        self._failing_since = None
        self.stats.last_error = ""


def _halves(part: Part) -> list[Part]:
    """Two halves of a rejected part (samples only or points only), or none for one record."""
    samples, points = part
    if len(samples) + len(points) <= 1:
        return []
    if samples:
        mid = len(samples) // 2
        return [(samples[:mid], []), (samples[mid:], [])]
    mid = len(points) // 2
    return [([], points[:mid]), ([], points[mid:])]


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
