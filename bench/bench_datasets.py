"""Anomaly detection on real public labelled datasets, with the defaults, against baselines.

    .venv/bin/python bench/bench_datasets.py --raw RAW --converted OUT [NAME ...]

RAW holds each dataset's own files in a folder of its name (RAW/nab, RAW/tep, RAW/batadal,
RAW/gecco2018: see bench/datasets.py for the repository each comes from; nothing of them is
kept here). Each NAME (default: all of datasets.CONVERTERS) is converted into OUT/NAME, one
CSV per run with a `train` column, then:

- `shopfloor eval --dataset OUT/NAME --json FILE`, the defaults, training on each file's
  `train` rows;
- on the very same scored rows: PCA T² + SPE (Q), the textbook MSPC baseline, fitted on the
  same training rows, 95 % of the variance, 99 % limits (F distribution for T², Box's
  chi-square approximation for SPE), a row flagged when either is over its limit; flagging
  every row; for NAB also the detectors whose results NAB publishes, at NAB's own thresholds;
- on a `-normal` dataset (normal operation only), the share of rows flagged and the flagged
  episodes (every one a false alarm) per day of scored rows.

`--max-files N` evaluates N of a dataset's files, spread evenly over the sorted names. Prints the
machine, per dataset the eval's own output and a table, then one summary row per dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from measure import machine_description
from scipy import stats

from analytics.dataset import Run, RunScores, read_run, score_verdicts
from analytics.detectors import PCADetector

NAB_PUBLISHED = ("numenta", "windowedGaussian", "randomCutForest", "relativeEntropy", "skyline")
LIMIT = 0.99
VARIANCE = 0.95
DAY_S = 86_400.0
DEFAULTS, PCA, EVERY_ROW = "shopfloor defaults", "PCA T²+SPE, 99 % limits", "flag every row"
Verdicts = Callable[[Run], np.ndarray]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(datasets.CONVERTERS))
    parser.add_argument("--raw", type=Path, required=True, help="folder of the raw datasets")
    parser.add_argument("--converted", type=Path, required=True, help="folder for the CSV runs")
    parser.add_argument("--max-files", type=int, help="evaluate at most this many files a set")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for one eval")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(datasets.CONVERTERS))
    if unknown:
        parser.error(
            f"unknown dataset {', '.join(unknown)}: one of {', '.join(datasets.CONVERTERS)}"
        )
    print(machine_description())
    summary = []
    for name in args.names or list(datasets.CONVERTERS):
        folder = args.converted / name
        for old in folder.glob("*.csv"):
            old.unlink()
        files = datasets.CONVERTERS[name](args.raw / datasets.source_name(name), folder)
        files = _spread(sorted(files), args.max_files)
        print(f"\n## {name}: {len(files)} file(s) in {folder}")
        print(f"training part: {datasets.TRAINING[name]}")
        summary.append((name, _bench(name, files, args)))
    print("\n" + _summary_table(summary))


def _spread(files: list[Path], most: int | None) -> list[Path]:
    if most is None or len(files) <= most:
        return files
    return [files[i] for i in np.linspace(0, len(files) - 1, most).round().astype(int)]


def _bench(name: str, files: list[Path], args: argparse.Namespace) -> dict[str, dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        chosen = Path(tmp) / name
        chosen.mkdir()
        for path in files:
            (chosen / path.name).symlink_to(path.resolve())
        started = _children_cpu_s()
        ours = _eval(chosen, Path(tmp) / "eval.json", args.timeout)
        cpu = _children_cpu_s() - started
    print(f"eval: {cpu:.0f} CPU-s, {ours['rows'] / cpu:,.0f} scored rows per CPU-second")
    runs = [read_run(path) for path in files]  # each trains on its own `train` rows
    rows = {DEFAULTS: ours, PCA: _scored(runs, _pca_verdicts)}
    if name == "nab":
        source = args.raw / "nab"
        for detector in NAB_PUBLISHED:
            flags = _nab_published(source, detector, runs[0].fit_rows)
            rows[f"NAB published `{detector}`"] = _scored(runs, lambda run, v=flags: v)
    rows[EVERY_ROW] = _scored(runs, lambda run: np.ones(_scored_rows(run), bool))
    days = sum(_scored_seconds(run) for run in runs) / DAY_S
    for scores in rows.values():
        scores.setdefault("scored_seconds", days * DAY_S)
    print(_table(rows, normal_only=name.endswith("-normal")))
    return rows


def _children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _eval(folder: Path, report: Path, timeout: float) -> dict[str, object]:
    """The defaults' overall numbers: `shopfloor eval --dataset`, each file training on its
    `train` rows."""
    command = [sys.executable, "-m", "shopfloor.cli", "eval", "--dataset", str(folder)]
    done = subprocess.run(
        [*command, "--json", str(report)], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        sys.exit(f"eval failed:\n{done.stderr}")
    print(done.stdout.strip())
    return json.loads(report.read_text())["overall"]


def _scored_rows(run: Run) -> int:
    return len(run.labels) - run.fit_rows


def _scored_seconds(run: Run) -> float:
    """The time the scored rows cover: the scored rows times the run's median sampling step."""
    step = float(np.median(np.diff(run.signals.index.asi8))) / 1e9
    return _scored_rows(run) * step


def _scored(runs: list[Run], verdicts: Verdicts) -> dict[str, object]:
    """Overall numbers of `verdicts(run)` (bool per scored row) by analytics.dataset's rules."""
    total = RunScores("overall")
    for run in runs:
        total.add(score_verdicts(run, verdicts(run)))
    return total.as_json()


def _pca_verdicts(run: Run) -> np.ndarray:
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
    kept = datasets.increasing(pd.to_datetime(result["timestamp"]))
    return (result["anomaly_score"].to_numpy() >= threshold)[kept][fit_rows:]


def _f(value: object, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _pair(scores: dict[str, object], normal_only: bool) -> str:
    """F1 / FAR; on normal-only rows (no F1) the share flagged."""
    f1 = "-" if normal_only else _f(scores["f1"])
    return f"{f1} / {_f(scores['false_alarm_rate'])}"


def _per_day(scores: dict[str, object]) -> str:
    """Flagged episodes (`alarm_episodes` where the eval gives them) per scored day."""
    episodes = scores.get("alarm_episodes", scores["episodes"])
    seconds = scores["scored_seconds"]
    assert isinstance(episodes, int) and isinstance(seconds, float | int)
    return f"{episodes / (seconds / DAY_S):.2f}" if seconds else "-"


def _table(rows: dict[str, dict[str, object]], *, normal_only: bool) -> str:
    if normal_only:
        lines = ["| detector | rows scored | days | flagged | episodes/day |", "| --- " * 5 + "|"]
        for name, s in rows.items():
            days = float(s["scored_seconds"]) / DAY_S  # type: ignore[arg-type]
            lines.append(
                f"| {name} | {s['rows']:,} | {days:.1f} | {_f(s['false_alarm_rate'])} | "
                f"{_per_day(s)} |"
            )
        return "\n".join(lines)
    lines = [
        "| detector | rows scored | F1 | FAR | MAR | event recall | median delay s |",
        "| --- " * 7 + "|",
    ]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['rows']:,} | {_f(s['f1'])} | {_f(s['false_alarm_rate'])} | "
            f"{_f(s['missed_alarm_rate'])} | {_f(s['event_recall'], '.2f')} | "
            f"{_f(s['median_delay_s'], '.0f')} |"
        )
    return "\n".join(lines)


def _summary_table(summary: list[tuple[str, dict[str, dict[str, object]]]]) -> str:
    """One row per dataset: F1 / FAR (labelled) or flagged share, episodes a day (normal-only)."""
    lines = [
        "| dataset | rows scored | defaults F1 / FAR | event recall | PCA T²+SPE F1 / FAR | "
        "flag every row F1 / FAR | false-alarm episodes/day (defaults / PCA) |",
        "| --- " * 7 + "|",
    ]
    for name, rows in summary:
        ours, pca, every = (rows[key] for key in (DEFAULTS, PCA, EVERY_ROW))
        normal = name.endswith("-normal")
        per_day = f"{_per_day(ours)} / {_per_day(pca)}" if normal else "-"
        lines.append(
            f"| {name} | {ours['rows']:,} | {_pair(ours, normal)} | "
            f"{_f(ours['event_recall'], '.2f')} | {_pair(pca, normal)} | {_pair(every, normal)} | "
            f"{per_day} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
