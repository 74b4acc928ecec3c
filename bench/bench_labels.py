"""Operator feedback, replayed on real labelled data: do false alarms labelled as such stop
coming back, without hiding faults?

    .venv/bin/python bench/bench_labels.py FOLDER [FOLDER ...]   # bench_datasets.py's OUT/NAME

Per run (file) of each folder: the defaults are fitted on its `train` rows and score the rest in
one pass, as a running detector would. An operator labels the first LABELS false alarm episodes
(flagged rows with no faulty row among them) as false alarms; their rows and top signals make an
analytics.labels.FalseAlarmMemory beside the unchanged model. After the last label, the flags
without and with the memory are compared: false alarm episodes (flagged stretches without a
faulty row) and event recall (faulty stretches with a flagged row). Prints the machine, then a
row per folder. The memory's parameters and LABELS were chosen on `batadal` only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from measure import machine_description

from analytics.anomaly import AnomalyDetector
from analytics.dataset import Run, read_dataset
from analytics.episodes import segments
from analytics.labels import FalseAlarmMemory

LABELS = 3  # false alarm episodes the operator labels per run, the first ones


@dataclass
class Replay:
    """False alarm episodes and events after each run's labels, without and with them."""

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
    """One run: label its first false alarms, compare what follows with and without them."""
    train, scored = run.signals.iloc[: run.fit_rows], run.signals.iloc[run.fit_rows :]
    truth = run.labels[run.fit_rows :].astype(bool)
    detector = AnomalyDetector().fit(train)
    explained = detector.explain(scored, history=train)
    flags = explained["anomaly"].to_numpy().astype(bool)
    index = {name: i for i, name in enumerate(detector.signals_)}
    top = np.array([index.get(name, -1) for name in explained["top_signal"]])
    values = scored[detector.signals_].to_numpy(dtype=float)
    labelled = [(a, b) for a, b in segments(flags) if not truth[a:b].any()][:LABELS]
    end = labelled[-1][1] if labelled else len(flags)
    if end == len(flags):
        return Replay(runs=1)
    rows = np.concatenate([np.arange(a, b) for a, b in labelled])
    scale = train[detector.signals_].std().to_numpy(dtype=float)
    memory = FalseAlarmMemory().fit(values[rows], top[rows], scale)
    before = flags[end:]
    after = memory.quiet(before, values[end:], top[end:])
    later = truth[end:]
    events = segments(later)
    return Replay(
        runs=1,
        labelled=1,
        false_before=_false_episodes(before, later),
        false_after=_false_episodes(after, later),
        events=len(events),
        caught_before=sum(before[a:b].any() for a, b in events),
        caught_after=sum(after[a:b].any() for a, b in events),
    )


def _false_episodes(verdict: np.ndarray, truth: np.ndarray) -> int:
    return sum(1 for a, b in segments(verdict) if not truth[a:b].any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print(machine_description())
    print(
        f"| dataset | runs with false alarms labelled (the first {LABELS}) | false alarm "
        "episodes after them: without the labels / with them | event recall after them: "
        "without / with |"
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
