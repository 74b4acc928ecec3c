"""Operator feedback, replayed on real labelled data: do false alarms labelled as such stop
coming back, without hiding faults?

    .venv/bin/python bench/bench_labels.py FOLDER [FOLDER ...]   # bench_datasets.py's OUT/NAME

Per run (file) of each folder: the defaults are fitted on its `train` rows and score the rest in
one pass, as a running detector would. An operator labels the first LABELS false alarm episodes
(flagged rows with no faulty row among them) as false alarms; each is learnt as `shopfloor label`
teaches an online model (analytics.learning: its feature rows, and one window after it, are
remembered, and a later row near one of them in every feature scores below the threshold).
After the last label, the flags without and with what was learnt are compared: false alarm
episodes (flagged stretches without a faulty row) and event recall (faulty stretches with a
flagged row). Prints the machine, then a row per folder. LABELS was chosen on `batadal`; the
matching rule's parameters on the simulated line (analytics.learning).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from measure import machine_description

from analytics.anomaly import AnomalyDetector, episode_rows
from analytics.dataset import Run, read_dataset
from analytics.episodes import segments
from analytics.learning import normal_patterns, remember

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
    scores = detector.anomaly_scores(scored, history=train)
    flags = _flags(detector, scores)
    labelled = [(a, b) for a, b in segments(flags) if not truth[a:b].any()][:LABELS]
    end = labelled[-1][1] if labelled else len(flags)
    if end == len(flags):
        return Replay(runs=1)
    features = detector.features(scored, history=train)
    learnt = normal_patterns(detector.features(train))
    for a, b in labelled:  # one pattern per labelled false alarm, as `shopfloor label` learns
        rows = np.arange(a, min(b + detector.window, end))
        learnt = remember(learnt, features[rows], scores[rows], 1.0)
    quieted = scores.copy()
    quieted[end:] = learnt.capped(features[end:], scores[end:], 1.0)
    before, after, later = flags[end:], _flags(detector, quieted)[end:], truth[end:]
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


def _flags(detector: AnomalyDetector, scores: np.ndarray) -> np.ndarray:
    """The detector's verdicts on rows of these scores (its alarm logic), as booleans."""
    return episode_rows(scores > 1.0, detector.k, detector.n, detector.bridge).astype(bool)


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
        before, after = total.false_before, total.false_after
        drop = (
            f" ({abs(1 - after / before):.0%} {'fewer' if after <= before else 'more'})"
            if before
            else ""
        )
        recall = (
            f"{total.caught_before / total.events:.2f} / {total.caught_after / total.events:.2f}"
            if total.events
            else "- (no faults after)"
        )
        print(
            f"| {folder.name} | {total.labelled} of {total.runs} | {before} / {after}{drop} | "
            f"{recall} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
