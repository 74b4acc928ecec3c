"""Real public labelled datasets -> the CSV-per-run folder `shopfloor eval --dataset` reads.

    .venv/bin/python bench/datasets.py NAME SOURCE OUT_DIR

NAME is one of CONVERTERS; SOURCE the dataset's own files as its repository holds them (a
checkout, or the files copied out of one); OUT_DIR the folder for the CSV runs. Nothing of any
dataset is kept in this repository.

Each run file has the time first (ISO 8601, UTC), one column per signal, `label` (1 = the
dataset's own label says faulty or attacked) and `train`: 1 for the leading rows that train, 0
after. The training part is fixed per dataset by the rule in TRAINING, chosen from the dataset's
own documentation before any detector ran on it; it never reaches a labelled row. `-normal`
datasets are records of normal operation only (every label 0), to count false alarms per day.

Where each comes from (a public repository) and what runs it makes:
- nab: numenta/NAB, realKnownCause/machine_temperature_system_failure.csv: one run;
- tep, tep-normal: camaramm/tennessee-eastman-profBraatz: d01_te ... d21_te; d00_te;
- batadal, batadal-normal: SYChen123/Baseline-outlier-detection-algorithms-on-BATADAL-dataset,
  data/: dataset04 and test_dataset (labelled); dataset03 (normal only);
- gecco2018: frehbach/EventDetectR, data/geccoIC2018Train.rda and geccoIC2018Test.rda.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

LABEL, TRAIN = "label", "train"
NAB_SERIES = "realKnownCause/machine_temperature_system_failure.csv"
NAB_PROBATION = 0.15  # NAB's probationary period: 15 % of a file, at most 15 % of 5,000 rows
TEP_PERIOD_S = 180.0  # the Braatz set samples every 3 minutes
TEP_FAULT_FROM = 160  # rows before the fault is introduced (8 h)
TEP_START = pd.Timestamp(datetime(2000, 1, 1, tzinfo=UTC))  # the files carry no clock
BATADAL_NORMAL_TRAIN_DAYS = 30
GECCO_TRAIN = pd.Timedelta(hours=24)
GECCO_FILES = ("geccoIC2018Train", "geccoIC2018Test")

TRAINING = {
    "nab": "NAB's own probationary period: min(15 % of the file, 750 rows) = 750 rows (62.5 h)",
    "tep": "d00.dat's 500 rows (25 h, the set's designated training data) before each test file",
    "tep-normal": "as tep: d00.dat's 500 rows, then d00_te scored (48 h, fault-free)",
    "batadal": "BATADAL's training dataset 1 (dataset03: a year of normal operation, 8,761 rows) "
    "before each labelled file",
    "batadal-normal": f"dataset03's first {BATADAL_NORMAL_TRAIN_DAYS} days (720 rows); "
    "the other 335 days scored",
    "gecco2018": "each file's first 24 h (1,440 rows), cut short before its first labelled event",
}


def nab(repo: Path, out: Path) -> list[Path]:
    """machine_temperature_system_failure as one run; rows inside a labelled window are 1.
    The series' clock steps back an hour once (2014-01-07 02:55 -> 02:00): rows not after the
    one before are left out (12), so that the time column stays in order."""
    windows = json.loads((repo / "labels/combined_windows.json").read_text())[NAB_SERIES]
    series = pd.read_csv(repo / "data" / NAB_SERIES)
    times = pd.to_datetime(series["timestamp"], utc=True)
    kept = increasing(times)
    frame = pd.DataFrame({"temperature": series["value"].to_numpy()[kept]}, index=times[kept])
    labels = np.zeros(len(frame), dtype=int)
    for start, end in windows:
        labels[(frame.index >= _utc(start)) & (frame.index <= _utc(end))] = 1
    probation = int(min(np.floor(NAB_PROBATION * len(series)), NAB_PROBATION * 5000))
    return [write_run(out / "machine_temperature.csv", frame, labels, probation)]


def increasing(times: pd.Series) -> np.ndarray:
    """True for each time later than every one before it (the rows a run keeps)."""
    return (times > times.cummax().shift(fill_value=times.iloc[0] - pd.Timedelta(1))).to_numpy()


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def tep(repo: Path, out: Path) -> list[Path]:
    """Per faulty test file dNN_te.dat (NN 01-21) one run of 52 signals: d00.dat's 500 normal
    samples (the training set of the literature) first, then the test file, the fault labelled
    from sample 161 on."""
    return [_tep_run(repo, source, out) for source in sorted(repo.glob("d[0-9][0-9]_te.dat"))[1:]]


def tep_normal(repo: Path, out: Path) -> list[Path]:
    """d00_te.dat, the fault-free test file, after d00.dat: 48 h of normal operation scored."""
    return [_tep_run(repo, repo / "d00_te.dat", out)]


def _tep_run(repo: Path, source: Path, out: Path) -> Path:
    names = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]
    normal = np.loadtxt(repo / "d00.dat").T  # d00.dat is stored one variable per line
    test = np.loadtxt(source)
    values = np.vstack([normal, test])
    fault = int(source.name[1:3])
    labels = np.r_[np.zeros(len(normal)), (np.arange(len(test)) >= TEP_FAULT_FROM) * (fault > 0)]
    index = TEP_START + pd.to_timedelta(np.arange(len(values)) * TEP_PERIOD_S, unit="s")
    frame = pd.DataFrame(values, index=index, columns=names)
    return write_run(out / f"{source.stem}.csv", frame, labels.astype(int), len(normal))


def batadal(repo: Path, out: Path) -> list[Path]:
    """dataset04 (6 months, 7 attacks) and test_dataset (3 months, 7 attacks), each after
    dataset03 (a year of normal operation) as its training part. ATT_FLAG of these copies marks
    every hour of the 14 attacks of the organisers' published attack tables (checked)."""
    normal = _batadal_frame(repo / "data/dataset03.csv")
    written = []
    for name in ("dataset04", "test_dataset"):
        attacked = _batadal_frame(repo / f"data/{name}.csv")
        frame = pd.concat([normal, attacked])
        labels = frame.pop("ATT_FLAG").to_numpy().astype(int)
        labels[: len(normal)] = 0
        written.append(write_run(out / f"{name}.csv", frame, labels, len(normal)))
    return written


def batadal_normal(repo: Path, out: Path) -> list[Path]:
    """dataset03 alone: a year of the C-Town network without attacks, hourly."""
    frame = _batadal_frame(repo / "data/dataset03.csv").drop(columns="ATT_FLAG")
    train = BATADAL_NORMAL_TRAIN_DAYS * 24
    return [write_run(out / "dataset03.csv", frame, np.zeros(len(frame), dtype=int), train)]


def _batadal_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame.columns = [name.strip() for name in frame.columns]
    moments = pd.to_datetime(frame.pop("DATETIME"), format="%d/%m/%y %H", utc=True)
    return frame.set_index(pd.DatetimeIndex(moments, name="time")).astype(float)


def gecco2018(repo: Path, out: Path) -> list[Path]:
    """The GECCO 2018 industrial challenge (a drinking-water supply, Thueringer
    Fernwasserversorgung): its train and test files, each a run of 9 water-quality signals at
    1 min, EVENT the label. Rows with an empty signal (1,045 in the train file, 24,480 in the
    test file, none during an event) are left out: eval stops at an empty cell."""
    import rdata  # pyproject's `bench` extra; only this converter needs it (R data, .rda)

    written = []
    for name in GECCO_FILES:
        (frame,) = rdata.read_rda(repo / f"data/{name}.rda").values()
        frame = frame.dropna()
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("Time"), unit="s", utc=True))
        labels = frame.pop("EVENT").to_numpy().astype(int)
        day = int(np.searchsorted(frame.index, frame.index[0] + GECCO_TRAIN))
        train = min(day, int(np.argmax(labels)) if labels.any() else day)
        written.append(write_run(out / f"{name}.csv", frame.astype(float), labels, train))
    return written


def write_run(target: Path, frame: pd.DataFrame, labels: np.ndarray, train_rows: int) -> Path:
    """One run file: time (ISO 8601), the signals, label, train (1 for the first train_rows)."""
    if labels[:train_rows].any():
        raise ValueError(f"{target.name}: the training part holds labelled rows")
    target.parent.mkdir(parents=True, exist_ok=True)
    table = frame.copy()
    table.index = pd.Index([moment.isoformat() for moment in frame.index], name="time")
    table[LABEL] = labels
    table[TRAIN] = (np.arange(len(frame)) < train_rows).astype(int)
    table.to_csv(target, float_format="%.10g")
    return target


CONVERTERS: dict[str, Callable[[Path, Path], list[Path]]] = {
    "nab": nab,
    "tep": tep,
    "tep-normal": tep_normal,
    "batadal": batadal,
    "batadal-normal": batadal_normal,
    "gecco2018": gecco2018,
}


def source_name(dataset: str) -> str:
    """The raw folder a dataset converts from (a -normal set shares its parent's)."""
    return dataset.removesuffix("-normal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(CONVERTERS))
    parser.add_argument("source", type=Path, help="the dataset's own files (repository checkout)")
    parser.add_argument("out", type=Path, help="folder for the CSV files")
    args = parser.parse_args()
    for path in CONVERTERS[args.dataset](args.source, args.out):
        print(path)


if __name__ == "__main__":
    main()
