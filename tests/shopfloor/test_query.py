"""`shopfloor query` as a user reads it: values with the digits their tag carries, the `--since`
window, the events (faults beside anomaly episodes) and each machine's anomaly severity, from a
real SQLite historian."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import time
from pathlib import Path

from core.sample import Point, Quality, Sample
from historian import open_historian
from shopfloor import cli

NS = 1_000_000_000
FLOAT32_VALUE = struct.unpack("<f", struct.pack("<f", 13.780268))[0]  # 13.780267715454102
TAGS = {"site": "demo", "line": "line1"}


def store(url: str) -> None:
    now = time.time_ns()

    def sample(machine: str, signal: str, value: float, ago_s: float) -> Sample:
        return Sample("line1", machine, signal, value, Quality.GOOD, now - int(ago_s * NS), "demo")

    async def write() -> None:
        async with open_historian(url) as historian:
            await historian.write_samples(
                [
                    sample("conveyor", "speed_hz", 563 * 0.1, 1),  # a scaled register: 56.3
                    sample("conveyor", "current_a", FLOAT32_VALUE, 1),  # a float32 register
                    sample("filler", "bottles_filled_total", 4000000001.0, 1),
                    sample("filler", "fill_volume_ml", 12345.678, 1),
                    sample("air_compressor", "pressure_bar", 7.2, 600),  # ten minutes old
                ]
            )
            await historian.write_points(
                [
                    Point("events", {**TAGS, "machine": "conveyor", "kind": "fault"},
                          {"text": "conveyor_jam started", "active": True}, now - 60 * NS),
                    Point("events", {**TAGS, "machine": "conveyor", "kind": "anomaly"},
                          {"text": "anomaly on conveyor: speed_hz", "active": True,
                           "top_signal": "speed_hz", "peak_severity": 3.14159}, now - 56 * NS),
                    Point("anomaly", {**TAGS, "machine": "conveyor", "detector": "pca"},
                          {"score": 981831.0, "threshold": 100000.0, "severity": 9.81831,
                           "is_anomaly": True, "top_signal": "speed_hz"}, now - 2 * NS),
                ]
            )  # fmt: skip

    asyncio.run(write())


def query(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["query", *args])
    return code, out.getvalue()


def test_values_show_the_digits_their_tag_carries_and_nothing_is_lost(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'h.db'}"
    store(url)
    code, out = query("--historian", url)
    assert code == 0
    values = {line.split()[1]: line.split()[2] for line in out.splitlines()[1:]}
    assert values["speed_hz"] == "56.3"  # not 56.300000000000004
    assert values["current_a"] == "13.780268"  # not 13.780267715454102
    assert values["bottles_filled_total"] == "4000000001"  # a counter, exactly
    assert values["fill_volume_ml"] == "12345.678"  # not 12345.7
    rows = json.loads(query("--historian", url, "--json")[1])
    assert {r["signal"]: r["value"] for r in rows}["speed_hz"] == 56.3


def test_since_leaves_out_signals_not_heard_from_since(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'h.db'}"
    store(url)
    signals = {row["signal"] for row in json.loads(query("--historian", url, "--json")[1])}
    assert "pressure_bar" in signals
    recent = json.loads(query("--historian", url, "--json", "--since", "5m")[1])
    assert "pressure_bar" not in {row["signal"] for row in recent}
    assert len(recent) == len(signals) - 1


def test_events_list_the_fault_and_the_episode_with_its_severity(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'h.db'}"
    store(url)
    code, out = query("--historian", url, "--events")
    assert code == 0
    header, fault, episode = out.splitlines()
    assert header.split()[:4] == ["TIME", "MACHINE", "KIND", "ACTIVE"]
    assert "fault" in fault.split() and "conveyor_jam started" in fault
    assert "anomaly" in episode.split() and "3.1" in episode.split()
    assert "speed_hz" in episode


def test_anomalies_show_severity_not_the_raw_score(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'h.db'}"
    store(url)
    (row,) = json.loads(query("--historian", url, "--anomalies", "--json")[1])
    assert row == {
        "time": row["time"],
        "machine": "conveyor",
        "severity": 9.8,
        "level": "critical",
        "flagged": True,
        "top_signal": "speed_hz",
    }
    assert "981831" not in query("--historian", url, "--anomalies")[1]
