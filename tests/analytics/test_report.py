"""The report PNG: written, a valid PNG of a readable size, for epoch and run-relative times."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from analytics.episodes import Episode, ScoreTrace
from analytics.features import Frame
from analytics.report import render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Fault:
    fault: str
    start: float
    end: float


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", "PNG truncated"
    return struct.unpack(">II", data[16:24])


def a_machine(start: float, n: int = 1800) -> tuple[Frame, ScoreTrace]:
    rng = np.random.default_rng(0)
    times = start + np.arange(n, dtype=float)
    current = 8.0 + 0.1 * rng.standard_normal(n)
    current[900:1000] += 12.0  # a jam
    temp = 55.0 + 0.05 * np.arange(n) / n + 0.1 * rng.standard_normal(n)
    vib = 1.2 + 0.05 * rng.standard_normal(n)
    values = np.column_stack([current, temp, vib])
    score = np.abs(rng.standard_normal(n))
    score[900:1000] += 20.0
    frame = Frame(times, ("current_a", "motor_temp_c", "vibration_mm_s"), values)
    return frame, ScoreTrace(times, score)


@pytest.mark.parametrize("start", [0.0, 1_767_225_600.0], ids=["sim-seconds", "epoch"])
def test_report_is_a_readable_png(tmp_path: Path, start: float) -> None:
    frame, scores = a_machine(start)
    episodes = [Episode(start + 903, start + 1030, 21.5, "current_a")]
    faults = [Fault("conveyor_jam", start + 900, start + 1000)]
    out = render_report(
        frame, scores, 4.0, episodes, faults, tmp_path / "sub" / "conveyor.png", title="conveyor"
    )
    width, height = png_size(out)
    assert (width, height) == (1200, round(100 * (1.7 * 3 + 2.6)))
    assert out.stat().st_size > 20_000  # drawn curves, not an empty canvas


def test_flagged_signal_comes_first_and_panels_are_capped(tmp_path: Path) -> None:
    frame, scores = a_machine(0.0)
    episodes = [Episode(903, 1030, 21.5, "vibration_mm_s")]
    one = render_report(frame, scores, 4.0, episodes, [], tmp_path / "one.png", max_signals=1)
    all_three = render_report(frame, scores, 4.0, episodes, [], tmp_path / "all.png")
    assert png_size(one)[1] < png_size(all_three)[1]
