"""Batches samples from every input and writes them to the historian.

Connectors hand over small batches (one poll cycle, one publish cycle); InfluxDB and SQLite want
thousands of points per request. The writer sits between them: bounded, so that a slow historian
pushes back on the connectors instead of growing memory, and retrying, so that a historian that
blinks loses nothing. (A durable spool in front of it is the next step: DESIGN.md.)
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from historian.base import Historian, HistorianError
from historian.sample import Point, Sample

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    """What the writer has done, for status displays and the `connector` measurement."""

    samples_written: int = 0
    points_written: int = 0
    rejected: int = 0
    retries: int = 0
    pending: int = 0
    last_error: str = ""


class HistorianWriter:
    """Collects samples and points into batches and writes them, retrying what can succeed later."""

    def __init__(
        self,
        historian: Historian,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 0.5,
        max_pending: int = 100_000,
        retry_min_s: float = 0.5,
        retry_max_s: float = 30.0,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.historian = historian
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.drain_timeout_s = drain_timeout_s
        self.stats = WriterStats()
        self._queue: asyncio.Queue[tuple[list[Sample], list[Point]]] = asyncio.Queue(
            maxsize=max(1, max_pending // batch_size)
        )
        self._samples: list[Sample] = []
        self._points: list[Point] = []

    async def put(self, samples: Sequence[Sample]) -> None:
        """Hand over samples; waits while the historian is behind (backpressure, never a drop)."""
        if samples:
            self.stats.pending += len(samples)
            await self._queue.put((list(samples), []))

    async def put_points(self, points: Sequence[Point]) -> None:
        """Hand over points of the other measurements (events, connector health)."""
        if points:
            await self._queue.put(([], list(points)))

    async def run(self) -> None:
        """Write batches until cancelled; on cancellation, write what is held, then stop."""
        try:
            while True:
                await self._fill()
                await self._flush()
        except asyncio.CancelledError:
            await self._drain()
            raise

    def _take(self, item: tuple[list[Sample], list[Point]]) -> None:
        self._samples.extend(item[0])
        self._points.extend(item[1])

    async def _fill(self) -> None:
        """Wait for data, then gather more until the batch is full or the flush interval ends."""
        self._take(await self._queue.get())
        deadline = asyncio.get_running_loop().time() + self.flush_interval_s
        while len(self._samples) < self.batch_size:
            try:
                async with asyncio.timeout_at(deadline):
                    self._take(await self._queue.get())
            except TimeoutError:
                return

    async def _flush(self) -> None:
        await self._write(self._samples, self._points)
        self._samples, self._points = [], []

    async def _drain(self) -> None:
        """On shutdown: the batch being gathered or retried plus everything still queued."""
        while not self._queue.empty():
            self._take(self._queue.get_nowait())
        if not self._samples and not self._points:
            return
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                await self._flush()
        except TimeoutError:
            log.error(
                "shutdown: %d samples and %d points could not be written within %.0f s",
                len(self._samples),
                len(self._points),
                self.drain_timeout_s,
            )

    async def _write(self, samples: list[Sample], points: list[Point]) -> None:
        delay = self.retry_min_s
        while True:
            try:
                if samples:
                    await self.historian.write_samples(samples)
                if points:
                    await self.historian.write_points(points)
            except HistorianError as exc:
                self.stats.last_error = str(exc)
                if not getattr(exc, "retryable", True):
                    self._reject(samples, points, exc)
                    return
                self.stats.retries += 1
                log.warning("historian write failed, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.stats.samples_written += len(samples)
            self.stats.points_written += len(points)
            self.stats.pending -= len(samples)
            return

    def _reject(self, samples: list[Sample], points: list[Point], exc: HistorianError) -> None:
        """A write that can never succeed (bad token, unknown database): say so loudly, count it."""
        count = len(samples) + len(points)
        self.stats.rejected += count
        self.stats.pending -= len(samples)
        log.error("historian rejected a batch of %d records; they are not stored: %s", count, exc)
