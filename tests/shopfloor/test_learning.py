"""Learning from a false alarm label and planned periods, end to end against real historians
(SQLite, InfluxDB): the online detector flags a sensor drift, an operator labels it a false
alarm, the machine's model gets a new version that the running detector picks up without a
restart; the same drift again raises no episode while an air leak on the same machine still
does, every score names the version that gave it, and versions and a rollback survive a
restart. A planned period announced with `shopfloor plan` is scored but opens no episode."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from asyncio.subprocess import PIPE, STDOUT
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics.detectors import make_detector
from analytics.model_store import ActiveVersions, load_models, save_version
from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, train_models
from analytics.windows import read_telemetry
from core.sample import Point
from core.storage import Historian
from historian import open_historian
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from shopfloor import cli
from tests.analytics.line_recording import NS, T0, record
from tests.analytics.test_model_store import _model

ROOT = Path(__file__).resolve().parents[2]  # the CLI processes import this checkout
MACHINE = "air_compressor"
WARMUP_S, NORMAL_S, QUIET_S, FAULT_S, AFTER_S = 600, 1800, 120, 300, 420
FIRST_FLAG_S = 150  # a caught fault is flagged within this long: scored no further
pytestmark = pytest.mark.timeout(300)  # some 2,000 detection cycles and five CLI processes


@pytest.fixture(params=["sqlite", "influxdb"])
def historian_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'plant.db'}"
    return str(request.getfixturevalue("influx_db_url"))


async def cli_run(*argv: str) -> tuple[int, str]:
    """A `shopfloor` command in a process of its own, as an operator runs it beside `up`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shopfloor.cli", *argv, stdout=PIPE, stderr=STDOUT, cwd=ROOT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return await process.wait(), out.decode()


class Line:
    """The simulated compressor, recorded into the historian and scored online as it runs."""

    def __init__(self, models: Path) -> None:
        self.models = models
        self.sim = Simulator(load_line().model_copy(update={"faults": [], "stops": []}), seed=5)
        self.detector: OnlineDetector | None = None

    async def train(self, historian: Historian) -> None:
        for _ in range(WARMUP_S):
            self.sim.step(1.0)
        start = round(self.sim.time_s)
        await historian.write_samples(self._compressor(record(self.sim, NORMAL_S)))
        normal = await read_telemetry(historian, T0 + start, T0 + start + NORMAL_S + 1)
        train_models({MACHINE: normal[MACHINE]}, TrainingSettings(), self.models)

    async def fault(
        self, historian: Historian, fault: str, scored_s: int = FAULT_S + AFTER_S
    ) -> tuple[float, float]:
        """Quiet running, the fault and `scored_s` from its start, scored second by second:
        that span."""
        if self.detector is None:
            models = load_models(self.models)
            self.detector = OnlineDetector(
                historian,
                models,
                lag_s=0.0,
                kpi_interval_s=None,
                active_versions=ActiveVersions(self.models, models),
            )
        start = round(self.sim.time_s)
        samples = record(self.sim, QUIET_S)
        self.sim.inject(MACHINE, fault, 1.0, FAULT_S)
        samples += record(self.sim, scored_s)
        await historian.write_samples(self._compressor(samples))
        for second in range(start + 1, round(self.sim.time_s) + 1):
            await self.detector.step(T0 + second)
        return T0 + start + QUIET_S, T0 + self.sim.time_s

    @staticmethod
    def _compressor(samples: list) -> list:  # type: ignore[type-arg]
        return [s for s in samples if s.machine == MACHINE]


async def _points(historian: Historian, measurement: str, span: tuple[float, float]) -> list[Point]:
    """The compressor's points (episodes only, of `events`) in the span."""
    tags = {"machine": MACHINE} | ({"kind": "anomaly"} if measurement == "events" else {})
    start, end = (int(t * NS) for t in span)
    return await historian.points(measurement, tags=tags, start_ns=start, end_ns=end)


async def test_a_false_alarm_is_learnt_and_another_fault_still_alarms(
    historian_url: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    line = Line(models)
    async with open_historian(historian_url) as historian:
        await line.train(historian)
        drift = await line.fault(historian, "sensor_drift")
        (episode,) = [e for e in await _points(historian, "events", drift) if e.fields["active"]]
        since = f"{time.time() - T0 + 86_400:.0f}s"  # the simulated day lies in the past
        code, out = await cli_run(
            "episodes", "--historian", historian_url, "--since", since, "--json"
        )
        (listed,) = [r for r in json.loads(out) if r["id"].startswith("anomaly:")]
        assert listed["top_signal"] == episode.fields["top_signal"]

        argv = ("--as", "false_alarm", "--by", "ana", "--historian", historian_url)
        argv += ("--since", since, "--models", str(models))
        code, out = await cli_run("label", listed["id"], *argv)
        assert code == 0, out
        assert f"{MACHINE}: model v2 learnt this pattern as normal (was v1)" in out
        code, out = await cli_run("label", listed["id"], *argv)
        assert f"{MACHINE}: model v2 has learnt it already" in out  # learnt once

        # the same detector goes on: it picks up v2 at its next cycle
        drift_again = await line.fault(historian, "sensor_drift")
        leak = await line.fault(historian, "air_leak", FIRST_FLAG_S)
        assert await _points(historian, "events", drift_again) == []
        leak_opened = (await _points(historian, "events", leak))[0]
        assert leak_opened.fields["active"]
        before = await _points(historian, "anomaly", drift)
        after = await _points(historian, "anomaly", (drift_again[0], leak[1]))
    assert {p.fields["model_version"] for p in before} == {"v1"}
    assert {p.fields["model_version"] for p in after} == {"v2"}

    code, out = await cli_run("models", "--models", str(models), "--json")
    assert [(r["version"], r["active"], r["reason"]) for r in json.loads(out)] == [
        ("v1", False, "trained"),
        ("v2", True, f"learnt from false alarm {listed['id']}"),
    ]
    assert (await cli_run("rollback", MACHINE, "--models", str(models)))[0] == 0
    assert load_models(models)[MACHINE].lineage.name == "v1"  # as the next process sees it


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


async def test_a_planned_period_is_scored_but_opens_no_episode(
    historian_url: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    line = Line(models)
    async with open_historian(historian_url) as historian:
        await line.train(historian)
        start = T0 + line.sim.time_s
        window = ("--from", _iso(start), "--to", _iso(start + QUIET_S + FAULT_S + AFTER_S))
        argv = ("--note", "valve service", "--by", "ben", "--historian", historian_url)
        code, out = await cli_run("plan", MACHINE, *window, *argv, "--models", str(models))
        assert code == 0, out
        leak = await line.fault(historian, "air_leak")
        assert await _points(historian, "events", leak) == []
        scores = await _points(historian, "anomaly", leak)
    assert all(p.fields["planned"] for p in scores)
    assert sum(bool(p.fields["is_anomaly"]) for p in scores) > 60  # it would have alarmed

    since = f"{time.time() - T0 + 86_400:.0f}s"
    code, out = await cli_run("episodes", "--historian", historian_url, "--since", since, "--json")
    (planned,) = json.loads(out)
    assert planned["id"] == f"planned:{MACHINE}@{_iso(start)[:19]}Z"
    assert (planned["verdict"], planned["by"], planned["note"]) == (
        "planned",
        "ben",
        "valve service",
    )


def test_a_plan_for_an_unknown_machine_or_backwards_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_version(tmp_path / "models", _model(make_detector("pca")), "trained")
    argv = ["--historian", f"sqlite:{tmp_path / 'h.db'}", "--models", str(tmp_path / "models")]
    assert cli.main(["plan", "capper", "--to", "2030-01-01T00:00", *argv]) == 2
    err = capsys.readouterr().err
    assert err == "shopfloor plan: error: no machine 'capper' has a model (machines: conveyor)\n"
    span = ["--from", "2026-01-02T00:00", "--to", "2026-01-01T00:00"]
    assert cli.main(["plan", "conveyor", *span, *argv]) == 2
    assert capsys.readouterr().err == "shopfloor plan: error: --to must be later than --from\n"
