"""Downtime reasons end to end on real historians (SQLite and InfluxDB): the simulated line runs
a conveyor jam, a short jam (a micro-stop) and a planned cleaning of the filler; the online
detector's KPI path writes the stops and the split availability, across a restart; `shopfloor
downtime` ranks the reasons, and an operator's label names a stop its PLC gave no reason for."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path

import pytest

from analytics.model_store import load_models
from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, train_models
from analytics.windows import read_telemetry
from core.sample import Quality, Sample
from historian import open_historian
from plc_sim.process import Simulator
from plc_sim.spec import ScheduledFault, ScheduledStop, load_line
from shopfloor import cli

KPI_S = 60
JAM_AT, JAM_S, SHORT_JAM_AT, SHORT_JAM_S = 300, 240, 700, 30
CLEAN_AT, CLEAN_S = 900, 180
RUN_S = 1260
RESTART_AT = 960  # detection stops and starts again while the filler is being cleaned
NO_REASON_TAG = "capper"  # its PLC has no reason-code tag: its stops are unassigned


@pytest.fixture(params=["sqlite", "influxdb"])
def historian(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'plant.db'}"
    return str(request.getfixturevalue("influx_db_url"))


def line_run(t0: int) -> list[Sample]:
    """The line with a jam, a short jam and a planned cleaning, every signal at 1 s."""
    spec = load_line().model_copy(
        update={
            "faults": [
                ScheduledFault(at_s=JAM_AT, machine="conveyor", fault="conveyor_jam",
                               duration_s=JAM_S),
                ScheduledFault(at_s=SHORT_JAM_AT, machine="conveyor", fault="conveyor_jam",
                               duration_s=SHORT_JAM_S),
            ],
            "stops": [
                ScheduledStop(at_s=CLEAN_AT, machine="filler", reason="cleaning",
                              duration_s=CLEAN_S)
            ],
        }
    )  # fmt: skip
    sim = Simulator(spec, seed=3)
    sim.warm_up(1800)
    samples = []
    for _ in range(RUN_S):
        sim.step(1.0)
        ts = (t0 + round(sim.time_s)) * 1_000_000_000
        samples += [
            Sample(spec.line, machine, signal, value, Quality.GOOD, ts, site=spec.site)
            for (machine, signal), value in sim.values().items()
            if (machine, signal) != (NO_REASON_TAG, "reason_code")
        ]
    return samples


async def detect(url: str, t0: int, models: Path) -> None:
    """Record the run, then the online detector over it at each KPI boundary, stopped and
    started again (a new process) at RESTART_AT; the KPI fields of the filler's intervals."""
    async with open_historian(url) as historian:
        await historian.write_samples(line_run(t0))
        normal = await read_telemetry(historian, t0 + 1, t0 + JAM_AT)
        train_models(
            {"energy_meter": normal["energy_meter"]}, TrainingSettings(min_rows=200), models
        )
        boundaries = range(t0 + KPI_S, t0 + RUN_S + 1, KPI_S)
        for first, last in ((t0, t0 + RESTART_AT), (t0 + RESTART_AT, t0 + RUN_S)):
            detector = OnlineDetector(historian, load_models(models), kpi_interval_s=KPI_S)
            await detector.step(first)  # the interval under way when it starts is not counted
            for now in (b for b in boundaries if first < b <= last):
                await detector.step(now)
            await detector.close()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def downtime(url: str, *extra: str) -> list[dict[str, object]]:
    code, out = run("downtime", "--historian", url, "--json", "--since", "6h", *extra)
    assert code == 0, out
    return json.loads(out)


def test_stops_get_reasons_micro_stops_split_availability_and_a_pareto(
    historian: str, tmp_path: Path
) -> None:
    t0 = (int(time.time()) // 3600 - 2) * 3600  # two hours ago, on a KPI boundary
    asyncio.run(detect(historian, t0, tmp_path / "models"))

    conveyor = downtime(historian, "--machine", "conveyor")
    assert [(r["reason"], r["category"], r["stops"], r["micro_stops"]) for r in conveyor] == [
        ("jam", "unplanned", 2, 1)
    ]
    assert conveyor[0]["lost_s"] == pytest.approx(JAM_S + SHORT_JAM_S, abs=2)

    # the filler starves while the conveyor is jammed, and is cleaned (planned): the cleaning
    # spans the restart and is still one stop of its full length
    filler = downtime(historian, "--machine", "filler")
    assert [(r["reason"], r["category"], r["stops"], r["micro_stops"]) for r in filler] == [
        ("starved", "unplanned", 2, 1),
        ("cleaning", "planned", 1, 0),
    ]
    assert filler[1]["lost_s"] == pytest.approx(CLEAN_S, abs=2)
    assert filler[0]["share_pct"] > filler[1]["share_pct"]

    # the capper's PLC gives no reason: unassigned, until an operator labels the one during the
    # cleaning; a new process reads the label back
    stops = downtime(historian, "--machine", NO_REASON_TAG, "--stops")
    assert [s["reason"] for s in stops] == ["unassigned"] * 3
    cleaning = stops[2]["id"]
    assert str(cleaning).startswith(f"stop:{NO_REASON_TAG}@")
    code, out = run("label", str(cleaning), "--as", "planned", "--note", "filler cleaning",
                    "--by", "ana", "--historian", historian, "--since", "6h")  # fmt: skip
    assert code == 0, out
    capper = downtime(historian, "--machine", NO_REASON_TAG)
    assert [(r["reason"], r["category"], r["stops"]) for r in capper] == [
        ("unassigned", "unplanned", 2),
        ("filler cleaning", "planned", 1),
    ]

    # availability splits its losses: the filler's intervals of the jam are unplanned loss,
    # those of the cleaning planned loss, and the three add up to one in every interval
    kpis = asyncio.run(kpi_points(historian, "filler"))
    jammed, cleaned = kpis[t0 + JAM_AT + 2 * KPI_S], kpis[t0 + CLEAN_AT + 2 * KPI_S]
    assert (jammed["availability"], jammed["planned_loss"], jammed["unplanned_loss"]) == (0, 0, 1)
    assert (cleaned["availability"], cleaned["planned_loss"], cleaned["unplanned_loss"]) == (
        0,
        1,
        0,
    )
    for fields in kpis.values():
        total = fields["availability"] + fields["planned_loss"] + fields["unplanned_loss"]
        assert total == pytest.approx(1.0)


async def kpi_points(url: str, machine: str) -> dict[int, dict[str, float]]:
    """The machine's kpi fields by the end of their interval (s)."""
    async with open_historian(url) as historian:
        points = await historian.points("kpi", tags={"machine": machine})
    return {p.ts // 1_000_000_000: {k: float(v) for k, v in p.fields.items()} for p in points}


def test_a_bad_reasons_file_stops_detect_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reasons = tmp_path / "reasons.yaml"
    reasons.write_text("filler:\n  7: {name: no_caps, category: sometimes}\n")
    code = cli.main(["detect", "--reasons", str(reasons), "--historian",
                     f"sqlite:///{tmp_path / 'plant.db'}"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"{reasons}: filler.7: category is planned or unplanned" in err
    assert err.count("\n") == 1
