"""Anomaly detection on real public labelled datasets, with the defaults, against baselines.

    .venv/bin/python bench/bench_datasets.py nab PATH/TO/NAB
    .venv/bin/python bench/bench_datasets.py tep PATH/TO/tennessee-eastman-profBraatz

Converts the dataset (bench/datasets.py) into a temporary CSV-per-run folder, runs
`shopfloor eval --dataset DIR --fit-rows N --json FILE` with the defaults (what the table of
docs/anomaly-detection.md shows), then scores on the very same rows:

- PCA T² + SPE (Q), the textbook MSPC baseline: fitted on the same training rows, 95 % of the
  variance, 99 % limits (F distribution for T², Box's chi-square approximation for SPE), a row
  flagged when either is over its limit;
- for NAB, the detectors whose results NAB publishes (results/<detector>/...), thresholded at
  NAB's own published thresholds (config/thresholds.json, standard profile);
- flagging every row.

Prints the machine, then one markdown table row per detector: F1, FAR, MAR, event recall,
median delay.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from measure import machine_description
from scipy import stats

from analytics.dataset import RunScores, read_dataset, score_verdicts
from analytics.detectors import PCADetector

FIT_ROWS = {"nab": 400, "tep": 500}  # a few hundred leading rows (TEP: the d00.dat training set)
NAB_PUBLISHED = ("numenta", "windowedGaussian", "randomCutForest", "relativeEntropy", "skyline")
LIMIT = 0.99
VARIANCE = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=sorted(FIT_ROWS))
    parser.add_argument("source", type=Path, help="the dataset's repository checkout")
    args = parser.parse_args()
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp:
        folder, report = Path(tmp) / "runs", Path(tmp) / "eval.json"
        getattr(datasets, args.dataset)(args.source, folder)
        fit_rows = FIT_ROWS[args.dataset]
        command = [sys.executable, "-m", "shopfloor.cli", "eval", "--dataset", str(folder)]
        command += ["--fit-rows", str(fit_rows), "--json", str(report)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        print(done.stdout)
        print(done.stderr.strip())
        ours = json.loads(report.read_text())["overall"]
        runs = read_dataset(folder, fit_rows=fit_rows)
        rows = [("shopfloor defaults (baseline+pca)", ours)]
        rows.append(("PCA T²+SPE, 99 % limits, same rows", _scored(runs, _pca_verdicts)))
        if args.dataset == "nab":
            for name in NAB_PUBLISHED:
                verdict = _nab_published(args.source, name, fit_rows)
                rows.append((f"NAB published `{name}`", _scored(runs, lambda run, v=verdict: v)))
        rows.append(("flag every row", _scored(runs, lambda run: np.ones(_scored_rows(run), bool))))
    print("| detector | F1 | FAR | MAR | event recall | median delay s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, s in rows:
        print(
            f"| {name} | {_f(s['f1'])} | {_f(s['false_alarm_rate'])} | "
            f"{_f(s['missed_alarm_rate'])} | {_f(s['event_recall'], '.2f')} | "
            f"{_f(s['median_delay_s'], '.0f')} |"
        )


def _f(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _scored_rows(run) -> int:
    return len(run.labels) - run.fit_rows


def _scored(runs, verdicts) -> dict[str, object]:
    """Overall numbers of `verdicts(run)` (bool per scored row) by analytics.dataset's rules."""
    total = RunScores("overall")
    for run in runs:
        total.add(score_verdicts(run, verdicts(run)))
    return total.as_json()


def _pca_verdicts(run) -> np.ndarray:
    """Textbook PCA monitoring: T² against its F-distribution limit, SPE against Box's
    chi-square approximation (g chi2(h), moments of the training SPE), both at 99 %."""
    X = run.signals.to_numpy()
    train, test = X[: run.fit_rows], X[run.fit_rows :]
    model = PCADetector(n_components=VARIANCE).fit(train)
    n, a = len(train), len(model.explained_variance_)
    t2_limit = a * (n - 1) * (n + 1) / (n * (n - a)) * stats.f.ppf(LIMIT, a, n - a)
    _, spe_train = model.statistics(train)
    mean, var = float(spe_train.mean()), float(spe_train.var())
    spe_limit = var / (2 * mean) * stats.chi2.ppf(LIMIT, 2 * mean**2 / var) if var else np.inf
    t2, spe = model.statistics(test)
    return (t2 > t2_limit) | (spe > spe_limit)


def _nab_published(repo: Path, detector: str, fit_rows: int) -> np.ndarray:
    """A NAB detector's published verdicts on the scored rows (the converter's rows)."""
    thresholds = json.loads((repo / "config/thresholds.json").read_text())
    threshold = thresholds[detector]["standard"]["threshold"]
    name = f"{detector}_{Path(datasets.NAB_SERIES).name}"
    result = pd.read_csv(repo / "results" / detector / "realKnownCause" / name)
    stamps = pd.to_datetime(result["timestamp"])
    ordered = (
        stamps > stamps.cummax().shift(fill_value=stamps.iloc[0] - pd.Timedelta(1))
    ).to_numpy()
    flags = (result["anomaly_score"].to_numpy() >= threshold)[ordered]  # the rows kept
    return flags[fit_rows:]


if __name__ == "__main__":
    main()
