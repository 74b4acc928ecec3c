"""Reading telemetry back from real historians into frames; the online sample buffer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from analytics.features import Frame, WindowSpec
from analytics.windows import (
    TelemetryBuffer,
    detection_signals,
    group_telemetry,
    read_telemetry,
)
from core.sample import Point, Quality, Sample
from core.schema import telemetry_point
from core.storage import Historian
from historian import open_historian

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC, on the grid of every period used here
NS = 10**9


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
async def historian(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Historian]:
    url = (
        f"sqlite:{tmp_path / 'h.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("influx_db_url")
    )
    async with open_historian(url) as opened:
        yield opened


def sample(machine: str, signal: str, t: float, value: float, quality: Quality = Quality.GOOD):
    return Sample("line1", machine, signal, value, quality, int((T0 + t) * NS), site="demo")


async def test_machines_and_signals_come_from_the_data_bad_quality_is_a_gap(
    historian: Historian,
) -> None:
    samples = [sample("conveyor", "current_a", t, 8.0 + t) for t in range(10)]
    samples += [sample("conveyor", "state", t, 2.0) for t in range(10)]
    samples += [sample("filler", "fill_volume_ml", t, 500.0) for t in range(10)]
    samples[4] = sample("conveyor", "current_a", 4, 99.0, Quality.BAD)
    await historian.write_samples(samples)

    found = await read_telemetry(historian, T0, T0 + 8)
    assert sorted(found) == ["conveyor", "filler"]
    conveyor = found["conveyor"]
    assert conveyor.tags == {"site": "demo", "line": "line1", "machine": "conveyor"}
    frame = conveyor.frame(WindowSpec(), ["state", "current_a", "missing"])
    assert frame.signals == ("state", "current_a", "missing")
    np.testing.assert_allclose(frame.times, T0 + np.arange(8.0))
    current = frame.values[:, 1]
    assert np.isnan(current[4]), "a bad-quality sample must be a gap, not its value"
    np.testing.assert_allclose(np.delete(current, 4), np.delete(8.0 + np.arange(8.0), 4))
    assert np.isnan(frame.values[:, 2]).all()

    only = await read_telemetry(historian, T0, T0 + 8, machine="filler")
    assert list(only) == ["filler"]


def test_buffer_merges_overlapping_reads_and_holds_a_quiet_signal() -> None:
    buffer = TelemetryBuffer(hold_s=100.0)

    def points(signal: str, times: range, value: float) -> list[Point]:
        tags = {"site": "demo", "line": "line1", "machine": "m", "signal": signal}
        return [
            Point("telemetry", tags, {"value": value, "quality": 0}, (T0 + t) * NS) for t in times
        ]

    buffer.merge(
        group_telemetry(points("busy", range(0, 60), 1.0) + points("stuck", range(0, 1), 5.0))
    )
    buffer.merge(group_telemetry(points("busy", range(50, 90), 1.0)))  # overlaps: stored once
    buffer.trim(T0 + 60)
    window = buffer.window("m", T0 + 59, T0 + 89)
    frame = window.frame(WindowSpec())
    assert frame.signals == ("busy", "stuck")
    assert len(frame.times) == 31
    assert not np.isnan(frame.values).any(), "the stuck signal's last value must be held"
    assert window.signals.count("busy") == 31
    assert buffer.window("m", T0 + 200, T0 + 230).signal_names() == ()


def test_detection_signals_leave_out_states_flags_counters_and_constants() -> None:
    n = 200
    rng = np.random.default_rng(1)
    columns = {
        "state": np.full(n, 2.0),
        "run_cmd": np.ones(n),
        "alarm_overtemp": (np.arange(n) > 150).astype(float),
        "bottles_filled_total": np.floor(np.arange(n) * 2.0),
        "run_hours": np.round(np.arange(n) / 3600, 2),
        "setpoint_c": np.full(n, 73.0),
        "current_a": 8.0 + rng.standard_normal(n),
        "steam_valve_pct": 40.0 + np.sin(np.arange(n) / 10),
    }
    frame = Frame(
        np.arange(n, dtype=float), tuple(columns), np.column_stack(list(columns.values()))
    )
    assert detection_signals(frame) == ("current_a", "steam_valve_pct")


async def test_text_readings_are_no_detector_input(historian: Historian) -> None:
    key = ("plant", "line1", "filler", "batch_id")
    await historian.write_points([telemetry_point(key, T0 * NS, Quality.GOOD, text="B-17")])
    mode = ("plant", "line1", "filler", "mode")
    await historian.write_points(
        [telemetry_point(mode, T0 * NS, Quality.GOOD, value=1.0, text="Run")]
    )
    await historian.write_samples(
        [Sample("line1", "filler", "speed", 2.0, Quality.GOOD, T0 * NS, "plant")]
    )
    (filler,) = (await read_telemetry(historian, T0, T0 + 1)).values()
    assert sorted(filler.signals) == ["mode", "speed"]  # the enumeration's code is a number
