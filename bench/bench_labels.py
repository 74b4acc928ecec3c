"""Operator feedback, replayed on real labelled data: does a false alarm labelled as such stop
coming back, without hiding faults?

    .venv/bin/python bench/bench_labels.py FOLDER [FOLDER ...]   # bench_datasets.py's OUT/NAME

Per run (file) of each folder: the defaults are fitted on its `train` rows and score the rest.
An operator then labels the first false alarm episode (flagged rows with no faulty row among
them) as a false alarm: `AnomalyDetector.learn_normal` on its rows (at least the 20 rows a mode
needs, ending where it ends). The rows after it are scored again, by the detector before and
after the label, each from the same point (history: the rows before it), and compared: false
alarm episodes (flagged stretches without a faulty row) and event recall (faulty stretches with
a flagged row) after the label. Prints the machine, then a row per folder.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from measure import machine_description

from analytics.anomaly import MIN_TRAINING_ROWS, AnomalyDetector
from analytics.dataset import Run, read_dataset, segments


@dataclass
class Replay:
    """False alarm episodes and events after each run's label, without and with it."""

    runs: int = 0
    labelled: int = 0
    false_before: int = 0
    false_after: int = 0
    events: int = 0
    caught_before: int = 0
    caught_after: int = 0

    def add(self, other: Replay) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def replay(run: Run) -> Replay:
    """One run: label its first false alarm, score what follows with and without it."""
    train, scored = run.signals.iloc[: run.fit_rows], run.signals.iloc[run.fit_rows :]
    truth = run.labels[run.fit_rows :].astype(bool)
    detector = AnomalyDetector().fit(train)
    verdict = detector.predict(scored, history=train).astype(bool)
    false = [(a, b) for a, b in segments(verdict) if not truth[a:b].any()]
    if not false:
        return Replay(runs=1)
    start, end = false[0]
    history, rest = _joined(train, scored.iloc[:end]), scored.iloc[end:]
    if len(rest) == 0:
        return Replay(runs=1)
    unlabelled = detector.predict(rest, history=history).astype(bool)
    taught = max(end - start, MIN_TRAINING_ROWS)  # the episode, or the rows ending with it
    detector.learn_normal(history.iloc[-taught:], history=history.iloc[:-taught])
    labelled = detector.predict(rest, history=history).astype(bool)
    later = truth[end:]
    events = segments(later)
    return Replay(
        runs=1,
        labelled=1,
        false_before=_false_episodes(unlabelled, later),
        false_after=_false_episodes(labelled, later),
        events=len(events),
        caught_before=sum(unlabelled[a:b].any() for a, b in events),
        caught_after=sum(labelled[a:b].any() for a, b in events),
    )


def _joined(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([first, second])


def _false_episodes(verdict: np.ndarray, truth: np.ndarray) -> int:
    return sum(1 for a, b in segments(verdict) if not truth[a:b].any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print(machine_description())
    print(
        "| dataset | runs with a false alarm labelled | false alarm episodes after it: "
        "without the label / with it | event recall after it: without / with |"
    )
    print("| --- | --- | --- | --- |")
    for folder in args.folders:
        total = Replay()
        for run in read_dataset(folder):
            total.add(replay(run))
        drop = 1 - total.false_after / total.false_before if total.false_before else 0.0
        recall = (
            f"{total.caught_before / total.events:.2f} / {total.caught_after / total.events:.2f}"
            if total.events
            else "- (no faults after)"
        )
        print(
            f"| {folder.name} | {total.labelled} of {total.runs} | {total.false_before} / "
            f"{total.false_after} ({drop:.0%} fewer) | {recall} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
