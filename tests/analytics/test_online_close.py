"""Detection that stops while an episode is open closes it: no episode stays "in progress"."""

from __future__ import annotations

from pathlib import Path

from analytics.model_store import load_models
from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, train_models
from analytics.windows import read_telemetry
from historian import open_historian
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from tests.analytics.line_recording import FAULT, MACHINE, NORMAL_S, NS, QUIET_S, T0, record

WARMUP_S = 600


async def test_close_ends_the_open_episode_with_its_duration(tmp_path: Path) -> None:
    sim = Simulator(load_line().model_copy(update={"faults": [], "stops": []}), seed=5)
    for _ in range(WARMUP_S):
        sim.step(1.0)
    async with open_historian(f"sqlite:{tmp_path / 'h.db'}") as historian:
        await historian.write_samples(record(sim, NORMAL_S))
        normal = await read_telemetry(historian, T0 + WARMUP_S, T0 + WARMUP_S + NORMAL_S + 1)
        train_models({MACHINE: normal[MACHINE]}, TrainingSettings(min_rows=600), tmp_path / "m")
        start = round(sim.time_s)
        stretch = record(sim, QUIET_S)
        sim.inject(MACHINE, FAULT, 1.0, 600.0)  # still under way when detection stops
        stretch += record(sim, 90)
        await historian.write_samples(stretch)

        detector = OnlineDetector(historian, load_models(tmp_path / "m"), lag_s=0.0)
        for second in range(start + 1, round(sim.time_s) + 1):
            await detector.step(T0 + second)
        (episode,) = detector.open_episodes().values()

        closing = await detector.close()
        assert detector.open_episodes() == {}
        events = await historian.points("events", tags={"machine": MACHINE, "kind": "anomaly"})
    assert [e.fields["active"] for e in events] == [True, False], events
    opened, closed = events
    assert closed == closing[0]
    assert closed.ts == round(episode.end * NS) and opened.ts == round(episode.start * NS)
    assert closed.fields["duration_s"] == episode.end - episode.start > 0
    assert closed.tags == opened.tags and closed.tags["site"] and closed.tags["line"]
    assert "detection stopped" in closed.fields["text"]
    assert detector.stats.episodes_closed == 1
