"""`shopfloor episodes` and `shopfloor label` against real historians (SQLite and InfluxDB):
an operator lists what the detector found, labels one, and the verdict survives a restart."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path

import pytest

from core.sample import Point
from historian import open_historian
from shopfloor import cli

NS = 1_000_000_000
TAGS = {"site": "demo", "line": "line1"}


@pytest.fixture(params=["sqlite", "influxdb"])
def historian(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'plant.db'}"
    return str(request.getfixturevalue("influx_db_url"))


def store(url: str, start_ns: int) -> None:
    """A jam on the conveyor that spread to the filler (an incident), both episodes closed, and
    a filler episode still open."""

    def event(machine: str, kind: str, ago_s: float, fields: dict[str, object]) -> Point:
        return Point(
            "events", {**TAGS, "machine": machine, "kind": kind}, fields, start_ns - int(ago_s * NS)
        )

    episode = {"top_signal": "speed_hz", "peak_score": 9.0, "peak_severity": 4.5}
    points = [
        event("conveyor", "anomaly", 600, {"text": "open", "active": True, **episode}),
        event("conveyor", "incident", 600, {"text": "incident", "active": True,
              "top_signal": "speed_hz", "machines": "conveyor"}),
        event("filler", "anomaly", 598, {"text": "open", "active": True, "top_signal": "fill",
              "peak_score": 3.0, "peak_severity": 1.5}),
        event("conveyor", "incident", 598, {"text": "grown", "active": True,
              "top_signal": "speed_hz", "machines": "conveyor,filler"}),
        event("conveyor", "anomaly", 300, {"text": "closed", "active": False, **episode,
              "duration_s": 300.0}),
        event("filler", "anomaly", 290, {"text": "closed", "active": False, "top_signal": "fill",
              "peak_score": 3.0, "peak_severity": 1.5, "duration_s": 308.0}),
        event("conveyor", "incident", 230, {"text": "ended", "active": False,
              "top_signal": "speed_hz", "machines": "conveyor,filler", "duration_s": 370.0}),
        event("filler", "anomaly", 60, {"text": "open", "active": True, "top_signal": "fill",
              "peak_score": 2.0, "peak_severity": 1.2}),
    ]  # fmt: skip

    async def write() -> None:
        async with open_historian(url) as store:
            await store.write_points(points)

    asyncio.run(write())


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def listed(url: str, *extra: str) -> list[dict[str, object]]:
    code, out = run("episodes", "--historian", url, "--json", *extra)
    assert code == 0, out
    return json.loads(out)


def test_an_operator_lists_labels_and_the_verdict_stays(historian: str) -> None:
    now = time.time_ns()
    store(historian, now)
    rows = listed(historian)
    assert [(r["id"].split("@")[0], r["machines"], r["until"] == "open") for r in rows] == [
        ("anomaly:conveyor", "conveyor", False),
        ("incident:conveyor", "conveyor,filler", False),
        ("anomaly:filler", "filler", False),
        ("anomaly:filler", "filler", True),
    ]
    assert rows[0]["severity"] == 4.5 and rows[1]["top_signal"] == "speed_hz"
    assert all(r["verdict"] is None for r in rows)

    incident, still_open = rows[1]["id"], rows[3]["id"]
    code, out = run("label", incident, "--as", "fault", "--by", "ana", "--note", "jam at infeed",
                    "--historian", historian)  # fmt: skip
    assert code == 0 and "fault (by ana)" in out
    assert (
        run("label", still_open, "--as", "planned", "--by", "ben", "--historian", historian)[0] == 0
    )
    assert (
        run("label", still_open, "--as", "false_alarm", "--by", "ana", "--historian", historian)[0]
        == 0
    )

    again = {r["id"]: r for r in listed(historian)}  # a new process reads it back
    assert (again[incident]["verdict"], again[incident]["by"]) == ("fault", "ana")
    assert again[incident]["note"] == "jam at infeed"
    assert (again[still_open]["verdict"], again[still_open]["by"]) == ("false_alarm", "ana")
    assert [r["id"] for r in listed(historian, "--machine", "filler")] == [
        incident,
        rows[2]["id"],
        still_open,
    ]


def test_an_unknown_id_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'plant.db'}"
    store(url, time.time_ns())
    code = cli.main(["label", "anomaly:capper@2026-01-01T00:00:00Z", "--as", "fault",
                     "--historian", url])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "no episode, incident or stop 'anomaly:capper@2026-01-01T00:00:00Z'" in err
    assert "`shopfloor episodes` lists their ids" in err and err.count("\n") == 1
