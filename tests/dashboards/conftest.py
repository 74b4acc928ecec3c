"""A short real `shopfloor up` into a database of its own on the test InfluxDB, for the
dashboard and alert queries to run against.

The line is the default one with a voltage sag two seconds in, so `events` has a fault that
starts and ends and the detector an episode to open and close, and a conveyor jam from
STILL_JAMMED_AT_S on that lasts past the end of the run, so its episode is still open when
`up` stops and only the shutdown closes it. The energy meter stands for planned maintenance
from MAINTENANCE_AT_S for a few seconds, inside the KPI intervals the detector covers, so
`events` has a closed stop for the downtime panel (its measurements go on). The models are
trained first on a simulated fault-free hour with 5 s windows and a 5 s hold-off (the
defaults, 30 s each, need more than a minute before an episode can close).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.features import WindowSpec
from analytics.training import TrainingSettings, train_models
from linelab.simulated import simulated_telemetry
from plc_sim.spec import DEFAULT_LINE
from testbed.influxd import free_port

SHOPFLOOR = Path(__file__).parents[2] / ".venv" / "bin" / "shopfloor"
RUN_S = 35
FAULT = {"at_s": 2, "machine": "energy_meter", "fault": "voltage_sag", "severity": 1.0}
FAULT_S = 4
STILL_JAMMED_AT_S = 20
JAM = {"at_s": STILL_JAMMED_AT_S, "machine": "conveyor", "fault": "conveyor_jam", "severity": 1.0}
MAINTENANCE_AT_S = 10
MAINTENANCE = {"at_s": MAINTENANCE_AT_S, "machine": "energy_meter", "reason": "maintenance"}
TRAINING = TrainingSettings(
    window=WindowSpec(window_s=5.0, short_s=2.0), alarm={"k": 3, "n": 5, "hold_off_s": 5.0}
)


@dataclass(frozen=True)
class LineRun:
    """Where the run's data is and when it was written."""

    http_url: str
    database: str
    start_ms: int
    end_ms: int
    folder: Path | None = None  # the line file and models of a real run (run_up)
    server: str = ""  # the historian URL without the database: influxdb://host:port

    def query(self, statement: str) -> dict[str, Any]:
        """The single statement's result of GET /query (epoch ms), as InfluxDB answers it."""
        params = urllib.parse.urlencode({"db": self.database, "q": statement, "epoch": "ms"})
        request = urllib.request.Request(f"{self.http_url}/query?{params}")
        _authorize(request)
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.load(resp)["results"][0]


def _authorize(request: urllib.request.Request) -> None:
    username = os.environ.get("INFLUX_USERNAME")
    if username:
        token = f"{username}:{os.environ.get('INFLUX_PASSWORD', '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())


def _post(http_url: str, statement: str) -> None:
    data = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"{http_url}/query", data=data, method="POST")
    _authorize(request)
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()


def _line_file(folder: Path) -> Path:
    line = yaml.safe_load(DEFAULT_LINE.read_text(encoding="utf-8"))
    line["faults"] = [{**FAULT, "duration_s": FAULT_S}, {**JAM, "duration_s": 10 * RUN_S}]
    line["stops"] = [{**MAINTENANCE, "duration_s": 4}]
    path = folder / "line.yaml"
    path.write_text(yaml.safe_dump(line), encoding="utf-8")
    return path


def _up_command(line: Path, historian: str, folder: Path) -> list[str]:
    options = {
        "--line": str(line),
        "--duration": f"{RUN_S}s",
        "--historian": historian,
        "--opcua-port": str(free_port()),
        "--modbus-port": str(free_port()),
        "--models": str(folder / "models"),
        "--kpi-interval": "10s",
        "--spool": str(folder / "spool"),
    }
    return [str(SHOPFLOOR), "up", *(part for option in options.items() for part in option)]


@pytest.fixture(scope="session")
def line_run(influxdb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineRun]:
    """`shopfloor up` for RUN_S seconds into a fresh database (dropped afterwards)."""
    parts = urllib.parse.urlsplit(influxdb_url)
    http_url = f"{'https' if parts.scheme == 'influxdbs' else 'http'}://{parts.netloc}"
    database = f"dashboards_{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("line_run")
    line = _line_file(folder)
    telemetry = simulated_telemetry(3600.0, seed=7, line=line)
    saved, skipped = train_models(telemetry, TRAINING, folder / "models")
    assert saved and not skipped, skipped
    _post(http_url, f'CREATE DATABASE "{database}"')
    try:
        server = f"{parts.scheme}://{parts.netloc}"
        yield run_up(LineRun(http_url, database, 0, 0, folder, server))
    finally:
        _post(http_url, f'DROP DATABASE "{database}"')


def run_up(into: LineRun) -> LineRun:
    """One more `shopfloor up` of RUN_S seconds into `into`'s database, with its line file and
    models (made by `line_run`): the same run, with the times it started and ended."""
    assert into.folder is not None, "run_up needs the folder of a line_run"
    start_ms = int(time.time() * 1000)
    done = subprocess.run(
        _up_command(into.folder / "line.yaml", f"{into.server}/{into.database}", into.folder),
        cwd=into.folder,
        capture_output=True,
        text=True,
        timeout=RUN_S + 60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dataclasses.replace(into, start_ms=start_ms, end_ms=int(time.time() * 1000))
