"""Real public labelled datasets -> the CSV-per-run folder `shopfloor eval --dataset` reads.

    .venv/bin/python bench/datasets.py nab NAB_REPO OUT_DIR
    .venv/bin/python bench/datasets.py tep TEP_REPO OUT_DIR

NAB_REPO is a checkout of github.com/numenta/NAB (the series is
data/realKnownCause/machine_temperature_system_failure.csv, its anomaly windows
labels/combined_windows.json); TEP_REPO one of github.com/camaramm/tennessee-eastman-profBraatz
(the Braatz test files d00_te.dat ... d21_te.dat: 960 samples every 3 min, the fault from sample
161 on, d00_te fault-free). Nothing of either is kept in this repository: bench/bench_datasets.py
converts and evaluates in one go.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

NAB_SERIES = "realKnownCause/machine_temperature_system_failure.csv"
TEP_PERIOD_S = 180.0  # the Braatz set samples every 3 minutes
TEP_FAULT_FROM = 160  # rows before the fault is introduced (8 h)
TEP_START = datetime(2000, 1, 1, tzinfo=UTC)  # the files carry no clock: an arbitrary origin


def nab(repo: Path, out: Path) -> list[Path]:
    """machine_temperature_system_failure as one run; rows inside a labelled window are 1.
    The series' clock steps back an hour once (2014-01-07 02:55 -> 02:00): rows not after the
    one before are left out (12), so that the time column stays in order."""
    windows = json.loads((repo / "labels/combined_windows.json").read_text())[NAB_SERIES]
    spans = [(_nab_time(a), _nab_time(b)) for a, b in windows]
    out.mkdir(parents=True, exist_ok=True)
    target = out / "machine_temperature.csv"
    with (repo / "data" / NAB_SERIES).open() as src, target.open("w", newline="") as dst:
        writer = csv.writer(dst)
        writer.writerow(["timestamp", "temperature", "label"])
        latest = None
        for row in csv.DictReader(src):
            moment = _nab_time(row["timestamp"])
            if latest is not None and moment <= latest:
                continue
            latest = moment
            label = int(any(a <= moment <= b for a, b in spans))
            writer.writerow([moment.isoformat(), row["value"], label])
    return [target]


def _nab_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tep(repo: Path, out: Path) -> list[Path]:
    """Per test file dNN_te.dat one run of 52 signals (XMEAS 1-41, XMV 1-11): the 500 normal
    samples of d00.dat (the literature's training set) first, then the test file, so that
    `--fit-rows 500` trains where the published methods were trained."""
    out.mkdir(parents=True, exist_ok=True)
    names = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]
    normal = list(zip(*_rows(repo / "d00.dat"), strict=True))  # stored one variable per line
    written = []
    for source in sorted(repo.glob("d[0-9][0-9]_te.dat")):
        fault = int(source.name[1:3])
        test = _rows(source)
        labels = [0] * len(normal) + [
            int(fault > 0 and i >= TEP_FAULT_FROM) for i in range(len(test))
        ]
        target = out / f"{source.stem}.csv"
        with target.open("w", newline="") as dst:
            writer = csv.writer(dst)
            writer.writerow(["time", *names, "label"])
            for i, (values, label) in enumerate(zip([*normal, *test], labels, strict=True)):
                moment = TEP_START + timedelta(seconds=i * TEP_PERIOD_S)
                writer.writerow([moment.isoformat(), *values, label])
        written.append(target)
    return written


def _rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


CONVERTERS = {"nab": nab, "tep": tep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(CONVERTERS))
    parser.add_argument("source", type=Path, help="the dataset's repository checkout")
    parser.add_argument("out", type=Path, help="folder for the CSV files")
    args = parser.parse_args()
    for path in CONVERTERS[args.dataset](args.source, args.out):
        print(path)


if __name__ == "__main__":
    main()
