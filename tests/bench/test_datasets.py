"""bench/datasets.py on small synthetic files laid out as the real datasets' own: the runs it
writes, their labels and the training part each run gets by its dataset's rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import datasets

BATADAL_SIGNALS = ["L_T1", "F_PU1", "S_PU1"]


def batadal_file(path: Path, start: str, hours: int, attacked: range = range(0)) -> None:
    moments = pd.date_range(start, periods=hours, freq="h")
    rng = np.random.default_rng(hours)
    table = pd.DataFrame(rng.normal(size=(hours, len(BATADAL_SIGNALS))), columns=BATADAL_SIGNALS)
    table.insert(0, "DATETIME", moments.strftime("%d/%m/%y %H"))
    table[" ATT_FLAG"] = [int(i in attacked) for i in range(hours)]  # the real header's space
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def test_batadal_runs_train_on_the_normal_year_and_keep_the_attack_labels(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    batadal_file(raw / "data/dataset03.csv", "2014-01-06", 48)
    batadal_file(raw / "data/dataset04.csv", "2016-07-04", 24, attacked=range(10, 14))
    batadal_file(raw / "data/test_dataset.csv", "2017-01-04", 12, attacked=range(3, 5))

    written = datasets.batadal(raw, tmp_path / "out")

    assert [path.name for path in written] == ["dataset04.csv", "test_dataset.csv"]
    run = pd.read_csv(written[0])
    assert list(run.columns) == ["time", *BATADAL_SIGNALS, "label", "train"]
    assert run["train"].tolist() == [1] * 48 + [0] * 24
    assert np.flatnonzero(run["label"]).tolist() == [48 + i for i in range(10, 14)]
    assert run["time"].iloc[48] == "2016-07-04T00:00:00+00:00"


def test_batadal_normal_trains_on_its_first_30_days(tmp_path: Path) -> None:
    batadal_file(tmp_path / "raw/data/dataset03.csv", "2014-01-06", 40 * 24)

    (written,) = datasets.batadal_normal(tmp_path / "raw", tmp_path / "out")

    run = pd.read_csv(written)
    assert run["train"].sum() == 30 * 24 and run["train"].iloc[: 30 * 24].all()
    assert not run["label"].any()


def test_nab_trains_on_its_probationary_period_and_drops_the_clock_step(tmp_path: Path) -> None:
    moments = pd.date_range("2013-12-02 21:15", periods=6000, freq="5min")
    stepped = moments.insert(3000, moments[2990])  # the clock steps back once
    series = pd.DataFrame({"timestamp": stepped.strftime("%Y-%m-%d %H:%M:%S"), "value": 1.0})
    (tmp_path / "data/realKnownCause").mkdir(parents=True)
    series.to_csv(tmp_path / "data" / datasets.NAB_SERIES, index=False)
    window = [str(moments[4000]), str(moments[4099])]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/combined_windows.json").write_text(
        json.dumps({datasets.NAB_SERIES: [window]})
    )

    (written,) = datasets.nab(tmp_path, tmp_path / "out")

    run = pd.read_csv(written)
    assert len(run) == 6000  # the row not after the one before it is left out
    assert run["train"].sum() == 750  # min(15 % of 6,001 rows, 15 % of 5,000)
    assert np.flatnonzero(run["label"]).tolist() == list(range(4000, 4100))


def test_a_training_part_over_labelled_rows_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.date_range("2020", periods=3, tz="UTC"))
    with pytest.raises(ValueError, match=r"run\.csv: the training part holds labelled rows"):
        datasets.write_run(tmp_path / "run.csv", frame, np.array([0, 1, 0]), 2)
