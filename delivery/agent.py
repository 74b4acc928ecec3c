"""Runs a set of inputs against one historian writer, like Telegraf's agent.

Each input runs in its own task of one TaskGroup: an input that fails is logged and restarted
(after a pause) without touching the others, and cancelling the agent cancels them all and
lets the writer flush what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from core.inputs import Emit, Input, TextInput
from core.sample import Point, Sample
from core.schema import CONNECTOR
from delivery.spool import SpoolError
from delivery.writer import Writer

log = logging.getLogger(__name__)

Observer = Callable[[Input, Sequence[Sample]], None]


class Agent:
    """Connects inputs to the writer, counts what flows and reports connector health."""

    def __init__(
        self,
        inputs: Sequence[Input],
        writer: Writer,
        *,
        health_interval_s: float = 10.0,
        restart_delay_s: float = 5.0,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.inputs = list(inputs)
        self.writer = writer
        self.health_interval_s = health_interval_s
        self.restart_delay_s = restart_delay_s
        self.observers = list(observers)
        for item in self.inputs:
            if isinstance(item, TextInput):
                item.emit_points = writer.put_points

    async def run(self) -> None:
        """Run every input, the writer and the health reporter until cancelled.

        On the way out the inputs stop first and hand on what they hold; the writer stops last
        and writes everything it was given. A writer that fails (its spool folder cannot be
        read) stops everything with its error.
        """
        writer = asyncio.create_task(self.writer.run(), name="historian-writer")
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_watch(writer), name="writer-watch")
                tasks.create_task(self._report_health(), name="connector-health")
                for item in self.inputs:
                    tasks.create_task(self._supervise(item), name=f"input:{item.name}")
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)  # its failure was raised above

    def _emit_for(self, item: Input) -> Emit:
        async def emit(samples: Sequence[Sample]) -> None:
            for observe in self.observers:
                observe(item, samples)
            await self.writer.put(samples)

        return emit

    async def _supervise(self, item: Input) -> None:
        """Keep one input running; a bug in one plugin must not stop the line's other data."""
        emit = self._emit_for(item)
        while True:
            try:
                await item.run(emit)
                return
            except SpoolError:
                raise  # not the input's fault: the writer stops the agent
            except Exception as exc:  # an input's own bug: log it, keep the others going
                item.stats.errors += 1
                item.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception(
                    "input %s failed; restarting in %.0f s", item.name, self.restart_delay_s
                )
                await asyncio.sleep(self.restart_delay_s)

    async def _report_health(self) -> None:
        while True:
            await self.writer.put_points(self.health_points())
            await asyncio.sleep(self.health_interval_s)

    def health_points(self) -> list[Point]:
        """One `connector` point per input, as the data model defines it."""
        now = time.time_ns()
        spool = self.writer.stats.spool
        return [
            Point(
                CONNECTOR.name,
                {"connector": item.name, "endpoint": item.endpoint},
                {
                    "connected": item.stats.connected,
                    "samples": item.stats.samples,
                    "errors": item.stats.errors,
                    "reconnects": item.stats.reconnects,
                    "latency_ms": float(item.stats.latency_ms),
                    "spool_bytes": spool.bytes,
                    "spool_dropped": spool.dropped_samples,
                    "spool_unreadable_bytes": spool.unreadable_bytes,
                },
                now,
            )
            for item in self.inputs
        ]


async def _watch(writer: asyncio.Task[None]) -> None:
    """Raise the writer's failure into the agent's TaskGroup; being cancelled leaves the writer
    running, since it must stop last."""
    await asyncio.shield(writer)
