"""One pipeline, several sinks: the same batches to a historian and to a broker, each through
a writer and a spool of its own, so an outage of one holds back only its own data."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from core.sample import Point, Sample
from delivery.writer import HistorianWriter, WriterStats


class Fanout:
    """One `Writer` to the agent, several underneath; `stats` are those of the first writer."""

    def __init__(self, writers: Sequence[HistorianWriter]) -> None:
        self.writers = list(writers)
        self.stats: WriterStats = self.writers[0].stats

    async def open(self) -> None:
        for writer in self.writers:
            await writer.open()

    async def put(self, samples: Sequence[Sample]) -> None:
        await asyncio.gather(*(writer.put(samples) for writer in self.writers))

    async def put_points(self, points: Sequence[Point]) -> None:
        await asyncio.gather(*(writer.put_points(points) for writer in self.writers))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for writer in self.writers:
                tasks.create_task(writer.run())
