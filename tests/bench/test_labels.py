"""bench/bench_labels.py's replay on a small synthetic run: a cleaning step labelled a false
alarm three times stops alarming, while faults that look different still alarm."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from analytics.dataset import Run

BENCH = Path(__file__).resolve().parents[2] / "bench"
TRAIN, ROWS = 600, 3000
CLEANING = [700, 900, 1100, 1500, 1900, 2300]  # +6 on signal a for 30 rows: normal, it turns out
# another signal; the same one, far further: past the factor (e**RADIUS, about 4.5) within which
# a feature far out still matches the remembered one (analytics.learning)
FAULTS = [(1700, "b", 8.0), (2100, "a", 40.0)]


@pytest.fixture
def bench_labels(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # the bench scripts import their neighbours
    return importlib.import_module("bench_labels")


def synthetic_run() -> Run:
    rng = np.random.default_rng(7)
    values = rng.normal(size=(ROWS, 2))
    labels = np.zeros(ROWS, dtype=int)
    for start in CLEANING:
        values[start : start + 30, 0] += 6.0
    for start, signal, step in FAULTS:
        values[start : start + 40, "ab".index(signal)] += step
        labels[start : start + 40] = 1
    index = pd.date_range("2026-01-01", periods=ROWS, freq="min", tz="UTC")
    signals = pd.DataFrame(values, index=index, columns=["a", "b"])
    return Run("synthetic.csv", signals, labels, TRAIN)


def test_labelled_cleaning_stops_alarming_and_the_faults_still_do(
    bench_labels: ModuleType,
) -> None:
    result = bench_labels.replay(synthetic_run())
    assert result.labelled == 1
    assert result.false_before >= 3  # the three cleanings after the labels, and noise
    assert result.false_after == 0
    assert result.events == 2 and result.caught_before == result.caught_after == 2
