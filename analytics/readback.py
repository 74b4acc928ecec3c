"""What the online detector and the simulator stored, read back for a report: scores, flagged
episodes and true fault spans of one machine over a period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.episodes import Episode, ScoreTrace
from analytics.model_store import MachineModel
from analytics.training import frame_episodes
from analytics.windows import MachineTelemetry
from core.sample import Point
from core.schema import ANOMALY, EVENTS, EventKind
from core.storage import Historian


@dataclass(frozen=True)
class FaultSpan:
    """A true fault interval read back from `events` (kind=fault)."""

    fault: str
    start: float
    end: float


async def stored_scores(
    historian: Historian, machine: str, since: float, until: float
) -> tuple[ScoreTrace, float, list[Episode]]:
    """Scores and episodes the online detector wrote, for the report."""
    span = {"start_ns": int(since * 1e9), "end_ns": int(until * 1e9)}
    points = await historian.points(ANOMALY.name, tags={"machine": machine}, **span)
    scored = [p for p in points if "score" in p.fields]
    times = np.array([p.ts / 1e9 for p in scored])
    values = np.array([float(p.fields["score"]) for p in scored])
    threshold = float(scored[-1].fields.get("threshold", np.nan)) if scored else np.nan
    anomaly_events = {"machine": machine, "kind": EventKind.ANOMALY.value}
    events = await historian.points(EVENTS.name, tags=anomaly_events, **span)
    episodes = []
    for start, end in _spans(events, until):
        inside = [p for p in scored if start * 1e9 <= p.ts <= end * 1e9] or scored[:1]
        peak = max(inside, key=lambda p: float(p.fields["score"]), default=None)
        top = str(peak.fields.get("top_signal", "")) if peak else ""
        episodes.append(Episode(start, end, float(peak.fields["score"]) if peak else 0.0, top))
    return ScoreTrace(times, values), threshold, episodes


def offline_scores(
    telemetry: MachineTelemetry, model: MachineModel
) -> tuple[ScoreTrace, float, list[Episode]]:
    """Nothing stored online for this range: score it now with the machine's model."""
    times, scores, episodes = frame_episodes(model, telemetry.frame(model.window, model.signals))
    return ScoreTrace(times, scores), model.threshold, episodes


async def fault_spans(
    historian: Historian, machine: str, since: float, until: float
) -> list[FaultSpan]:

    events = await historian.points(
        EVENTS.name,
        tags={"machine": machine, "kind": EventKind.FAULT.value},
        start_ns=int(since * 1e9),
        end_ns=int(until * 1e9),
    )
    by_fault: dict[str, list[Point]] = {}
    for event in events:
        name = str(event.fields.get("text", "fault")).split(" ", 1)[0]
        by_fault.setdefault(name, []).append(event)
    return [
        FaultSpan(name, start, end)
        for name, group in by_fault.items()
        for start, end in _spans(group, until)
    ]


def _spans(events: Sequence[Point], until: float) -> list[tuple[float, float]]:
    """(start, end) pairs from active true/false events; one still open ends at `until`."""
    spans, start = [], None
    for event in events:
        if event.fields.get("active") and start is None:
            start = event.ts / 1e9
        elif not event.fields.get("active") and start is not None:
            spans.append((start, event.ts / 1e9))
            start = None
    if start is not None:
        spans.append((start, until))
    return spans
