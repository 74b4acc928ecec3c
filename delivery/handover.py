"""Flow control between a poller and the durable spool: read on while the last batches commit."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from core.sample import Sample


class Handover:
    """Hands batches to `emit` without waiting for each to be stored, `depth` at most at once.

    `emit` returns once a batch is durable (fsync'd in the spool); waiting for that before the
    next read would put a disk flush into every poll cycle. Here the poller reads on while the
    last batches are committed, and waits once `depth` are outstanding, so a slow historian or
    disk still pushes back on the poller and nothing queues without bound. Batches reach `emit`
    in the order they were handed over. `drain` (on every way out) lets every batch handed
    over reach `emit` before the waits are cancelled, as the poller's own wait would have been:
    a batch handed over is never dropped by a cancellation (the spool holds a batch from the
    moment `emit` is called and commits it even when its caller stops waiting).
    """

    def __init__(
        self, emit: Callable[[Sequence[Sample]], Coroutine[Any, Any, None]], depth: int
    ) -> None:
        self._emit = emit
        self._depth = depth
        self._pending: deque[asyncio.Task[None]] = deque()

    async def put(self, samples: Sequence[Sample]) -> None:
        while len(self._pending) >= self._depth:
            await asyncio.shield(self._pending.popleft())
        self._pending.append(asyncio.create_task(self._emit(samples)))

    async def drain(self) -> None:
        await asyncio.sleep(0)  # a task not yet started runs to its first wait, inside emit
        pending, self._pending = list(self._pending), deque()
        for task in pending:
            task.cancel()
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome
