"""Online detection end to end on real historians (SQLite and the test InfluxDB server).

A fault-free stretch of the simulated line is written with write_samples, a model is trained
on what the historian gives back, then a stretch with an injected fault is written and the
online detector replays it at full speed (`step(now_s)`): `anomaly`, `events` and `kpi` points
must appear, with the right top_signal, and the report command must draw it.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics.detectors import DEFAULT_DETECTOR
from analytics.model_store import load_models
from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, train_models
from analytics.windows import read_telemetry
from core.sample import Point
from core.severity import anomaly_severity
from core.storage import Historian
from historian import open_historian
from plc_sim.faults import FaultEvent
from plc_sim.process import Simulator
from plc_sim.spec import LineSpec, load_line
from shopfloor import detection
from tests.analytics.line_recording import (
    AFTER_S,
    FAULT,
    FAULT_S,
    MACHINE,
    NORMAL_S,
    NS,
    QUIET_S,
    SIGNAL,
    T0,
    WARMUP_S,
    record,
)


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def historian_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'h.db'}"
    return request.getfixturevalue("influx_db_url")


@pytest.fixture
async def historian(historian_url: str) -> AsyncIterator[Historian]:
    async with open_historian(historian_url) as opened:
        yield opened


async def test_online_detector_flags_a_stuck_sensor_and_writes_anomaly_events_and_kpi(
    historian: Historian,
    historian_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = Simulator(load_line().model_copy(update={"faults": [], "stops": []}), seed=5)
    for _ in range(WARMUP_S):
        sim.step(1.0)
    await historian.write_samples(record(sim, NORMAL_S))
    normal = await read_telemetry(historian, T0 + WARMUP_S, T0 + WARMUP_S + NORMAL_S + 1)
    saved, skipped = train_models(
        {MACHINE: normal[MACHINE]},
        TrainingSettings(min_rows=600, alarm={"k": 3, "n": 5, "hold_off_s": 30.0}),  # closes
        tmp_path / "models",  # within AFTER_S
    )
    assert [m.machine for m in saved] == [MACHINE] and not skipped
    models = load_models(tmp_path / "models")
    assert SIGNAL in models[MACHINE].signals

    start = round(sim.time_s)
    stretch = record(sim, QUIET_S)
    sim.inject(MACHINE, FAULT, 1.0, FAULT_S)
    fault_at = T0 + round(sim.time_s)
    stretch += record(sim, FAULT_S + AFTER_S)
    await historian.write_samples(stretch)
    await historian.write_points([ground_truth(sim.spec, e) for e in sim.drain_events()])

    detector = OnlineDetector(
        historian, models, lag_s=0.0, kpi_interval_s=60.0, ideal_rates_per_min={MACHINE: 120.0}
    )
    for second in range(start + 1, round(sim.time_s) + 1):
        await detector.step(T0 + second)

    anomaly = await historian.points("anomaly", tags={"machine": MACHINE})
    assert len(anomaly) == QUIET_S + FAULT_S + AFTER_S
    assert {p.tags["detector"] for p in anomaly} == {DEFAULT_DETECTOR}
    assert all(p.fields["threshold"] == models[MACHINE].threshold for p in anomaly)
    flagged = [p for p in anomaly if p.fields["is_anomaly"]]
    assert flagged and min(p.ts for p in flagged) >= fault_at * NS, "no flag before the fault"
    tops = [p.fields["top_signal"] for p in flagged]
    assert tops.count(SIGNAL) / len(tops) >= 0.8, tops

    events = await historian.points("events", tags={"machine": MACHINE, "kind": "anomaly"})
    assert [e.fields["active"] for e in events] == [True, False], events
    opened, closed = events
    assert fault_at * NS <= opened.ts <= (fault_at + 35) * NS
    assert SIGNAL in opened.fields["text"] and SIGNAL in closed.fields["text"]
    assert closed.ts <= (fault_at + FAULT_S + 35) * NS
    assert set(opened.fields) == {"text", "active", "top_signal", "peak_score", "peak_severity"}
    assert opened.fields["peak_severity"] == anomaly_severity(
        opened.fields["peak_score"], models[MACHINE].threshold
    )
    assert all(
        p.fields["severity"] == anomaly_severity(p.fields["score"], p.fields["threshold"])
        for p in anomaly
    )
    assert opened.fields["top_signal"] == closed.fields["top_signal"] == SIGNAL
    assert opened.fields["peak_score"] > models[MACHINE].threshold
    during = [p.fields["score"] for p in flagged if opened.ts < p.ts <= closed.ts]
    assert closed.fields["peak_score"] == max([opened.fields["peak_score"], *during])
    assert closed.fields["duration_s"] == (closed.ts - opened.ts) / NS

    kpi = await historian.points("kpi", tags={"machine": MACHINE})
    # minutes that ended after the first step (the one under way then is incomplete)
    assert [p.ts // NS - T0 for p in kpi] == list(range(start + 60, round(sim.time_s) + 1, 60))
    factors = {"availability", "performance", "quality", "oee", "planned_loss", "unplanned_loss"}
    assert all(set(p.fields) == factors for p in kpi)
    assert all(0.9 <= p.fields["availability"] <= 1.0 for p in kpi)
    assert all(0.9 <= p.fields["performance"] <= 1.05 for p in kpi)
    assert detector.stats.failed_cycles == 0

    out = tmp_path / "report.png"
    args = parse(
        "report",
        *("--machine", MACHINE, "--out", str(out), "--historian", historian_url),
        *("--since", iso(T0 + start), "--until", iso(T0 + sim.time_s + 1)),
    )
    assert await args.handler(args) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 flagged episodes, 1 true faults" in capsys.readouterr().out

    # a range nothing was scored online for: the report scores it with the saved model
    offline = tmp_path / "offline.png"
    args = parse(
        "report",
        *("--machine", MACHINE, "--out", str(offline), "--historian", historian_url),
        *("--since", iso(T0 + WARMUP_S), "--until", iso(T0 + start)),
        *("--models", str(tmp_path / "models")),
    )
    assert await args.handler(args) == 0
    assert offline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def ground_truth(spec: LineSpec, event: FaultEvent) -> Point:
    """A fault start or end as the simulator's runner writes it to `events`."""
    tags = {"site": spec.site, "line": spec.line, "machine": event.machine, "kind": "fault"}
    fields = {"text": event.text, "active": event.active}
    return Point("events", tags, fields, (T0 + round(event.time_s)) * NS)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    detection.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()
