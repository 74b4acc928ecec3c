"""Batching between the notification handler and the pipeline's `emit`.

The handler must never await the pipeline per notification, so samples collect here and a
flusher hands them on in batches: every flush interval, or at once when a batch is full.
The buffer is bounded, so that memory stays flat while the writer or the CPU is behind: a
producer that fills it waits for the flusher (the OPC UA publish pipeline then stalls and the
server keeps the changes in its queues), up to `max_wait_s`. Samples that still find it full are
dropped, and every one is counted (`dropped`, the connector's errors, and a warning per episode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from core.inputs import ConnectorStats, Emit, EmitPoints
from core.sample import Point, Sample, SampleBatch

_log = logging.getLogger(__name__)
FINAL_FLUSH_TIMEOUT_S = 5.0


class SampleBuffer:
    """Bounded sample buffer with a flusher task (`run`)."""

    def __init__(
        self,
        emit: Emit,
        stats: ConnectorStats,
        *,
        flush_interval_s: float,
        batch_size: int = 5000,
        limit: int = 100_000,
        max_wait_s: float = 5.0,
    ) -> None:
        self._emit = emit
        self._stats = stats
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._limit = limit
        self._max_wait_s = max_wait_s
        self.dropped = 0  # samples that found the buffer full past max_wait_s
        self._dropping = False  # in an episode of drops (warned once per episode)
        self._pending = SampleBatch()  # columns: batches from the hot path append cheaply
        self._points: list[Point] = []  # readings with text, arrays (core.schema.telemetry_point)
        self.emit_points: EmitPoints | None = None
        self._due = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._pending) + len(self._points)

    def put_points(self, points: Sequence[Point]) -> None:
        """Queue telemetry points (readings that are not one number); they go out with the
        next flush, counted like samples."""
        self._points += points
        if len(self) >= self._batch_size:
            self._due.set()

    async def put(self, samples: Sequence[Sample], *, flush: bool = False) -> None:
        """Queue samples; `flush` asks for them to go out now. Waits while the buffer is full,
        up to `max_wait_s`; samples that find it still full are dropped and counted."""
        if not await self._room_within(self._max_wait_s):
            self._drop(len(samples))
            return
        self._dropping = False
        self._pending += samples
        if flush or len(self._pending) >= self._batch_size:
            self._due.set()
        await self._room_within(self._max_wait_s)  # backpressure: the producer slows down

    async def _room_within(self, seconds: float) -> bool:
        """Wait until the buffer is below its limit; False if it is still full after `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while len(self._pending) >= self._limit:
                    self._due.set()
                    self._room.clear()
                    await self._room.wait()
        except TimeoutError:
            return False
        return True

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._stats.errors += 1
        self._stats.last_error = (
            f"{self.dropped} samples dropped: the writer took nothing for {self._max_wait_s:g} s "
            f"while {self._limit} waited"
        )
        if not self._dropping:
            self._dropping = True
            _log.warning("%s; dropping until it catches up", self._stats.last_error)

    async def run(self) -> None:
        """Flush forever: on the interval, or early when a batch is due. Cancelled, it hands on
        what is pending first, so that a clean stop loses nothing the server delivered."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self._interval):
                        await self._due.wait()
                except TimeoutError:
                    pass
                await self.flush()
        except asyncio.CancelledError:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FINAL_FLUSH_TIMEOUT_S):
                    await self.flush()
            raise

    async def flush(self) -> None:
        """Hand everything pending to `emit` as one batch."""
        self._due.clear()
        if self._points:
            points, self._points = self._points, []
            if self.emit_points is None:  # run without an agent: nowhere to put them
                self._stats.errors += 1
                self._stats.last_error = f"{len(points)} readings that are not numbers dropped"
            else:
                await self.emit_points(points)
                self._stats.samples += len(points)
        if not self._pending:
            return
        batch, self._pending = self._pending, SampleBatch()
        self._room.set()
        await self._emit(batch)
        self._stats.samples += len(batch)
