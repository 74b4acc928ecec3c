"""The one narrow interface between every input plugin and the pipeline (Telegraf-style).

An input is built from its validated config, runs until cancelled and hands batches of samples
to `emit`. A PLC that is down never raises out of `run`: the input marks its tags bad, counts
the error and reconnects with backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.sample import Point, Sample

Emit = Callable[[Sequence[Sample]], Awaitable[None]]
# Readings that are not one number (a text, an enumeration's name, an array's elements) travel
# as telemetry points (core.schema.telemetry_point): `SampleBatch` holds numbers only.
EmitPoints = Callable[[Sequence[Point]], Awaitable[None]]


@dataclass(slots=True)
class ConnectorStats:
    """Counters behind the `connector` measurement; each input keeps its own up to date
    (`samples` counts what `emit` has taken)."""

    connected: bool = False
    samples: int = 0
    errors: int = 0
    reconnects: int = 0
    latency_ms: float = 0.0
    last_error: str = ""
    # the tags whose current value is BAD ("machine/signal") and why, kept by the input
    bad_tags: dict[str, str] = field(default_factory=dict)


class Input(Protocol):
    """What the pipeline needs of an input plugin."""

    name: str
    endpoint: str
    stats: ConnectorStats

    async def run(self, emit: Emit) -> None:
        """Read tags forever, calling `emit` with each batch; clean up on cancellation."""
        ...


@runtime_checkable
class TextInput(Input, Protocol):
    """An input that also reads values that are not numbers: the agent sets `emit_points`
    (the writer's `put_points`) before it runs it; None drops them, counted as errors."""

    emit_points: EmitPoints | None
