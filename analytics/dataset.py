"""Labelled runs from CSV files: read and check them, detect per run, score point-wise and by event.

A dataset is a folder of CSV files, one per run. Each has a header; its FIRST column is the time
(ISO 8601, or epoch seconds), a `label` column says 1 (faulty) or 0 (normal) per row, and every
other column is a numeric signal. The leading rows of each run train (`fit_rows`, or the rows
before `fit_until`); the rest is scored, as the continuation of the training rows (their last
rows fill the first windows). Every scored row gets a verdict; the scores are over all of them:

- point-wise: tp, fp, tn, fn; f1 = TP / (TP + (FP + FN) / 2); false_alarm_rate = FP / (FP + TN)
  and missed_alarm_rate = FN / (FN + TP), as fractions; raw_false_alarm_rate is the share of
  normal rows above the threshold before the alarm logic (what `false_alarm_rate` asks for);
- by event (a run of consecutive faulty rows): recall = events with at least one flagged row /
  events; precision = flagged episodes (runs of consecutive flagged rows) that overlap an event /
  episodes; detection delay = time of the first flagged row in an event less the event's start.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from analytics.anomaly import MIN_TRAINING_ROWS, AnomalyDetector

LABEL = "label"


class DatasetError(Exception):
    """A file that cannot be evaluated; the message names the file, row and column."""


@dataclass(frozen=True)
class Run:
    """One labelled run: signals with a time index (UTC), labels, how many rows train."""

    file: str
    signals: pd.DataFrame
    labels: np.ndarray
    fit_rows: int


@dataclass
class RunScores:
    """The numbers of one run (or of all runs together, `file` "overall")."""

    file: str
    rows: int = 0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    raw_fp: int = 0
    events: int = 0
    events_detected: int = 0
    episodes: int = 0
    episodes_on_events: int = 0
    delays_s: list[float] = field(default_factory=list)

    def add(self, other: RunScores) -> None:
        for name in ("rows", "tp", "fp", "tn", "fn", "raw_fp", "events", "events_detected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.episodes += other.episodes
        self.episodes_on_events += other.episodes_on_events
        self.delays_s += other.delays_s

    def as_json(self) -> dict[str, object]:
        normal, faulty = self.fp + self.tn, self.fn + self.tp
        flagged_or_missed = self.tp + (self.fp + self.fn) / 2
        counts = asdict(self)
        del counts["delays_s"]
        return {
            **counts,
            "f1": _ratio(self.tp, flagged_or_missed),
            "false_alarm_rate": _ratio(self.fp, normal),
            "missed_alarm_rate": _ratio(self.fn, faulty),
            "raw_false_alarm_rate": _ratio(self.raw_fp, normal),
            "event_recall": _ratio(self.events_detected, self.events),
            "event_precision": _ratio(self.episodes_on_events, self.episodes),
            "median_delay_s": float(np.median(self.delays_s)) if self.delays_s else None,
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def read_dataset(
    folder: Path, *, fit_rows: int | None = None, fit_until: float | None = None
) -> list[Run]:
    """Every *.csv file of the folder as a Run, sorted by name; DatasetError for the first bad
    one. Exactly one of fit_rows / fit_until (epoch seconds) says which leading rows train."""
    if (fit_rows is None) == (fit_until is None):
        raise ValueError("give exactly one of fit_rows and fit_until")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of CSV files")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise DatasetError(f"{folder}: no .csv files in it")
    return [read_run(path, fit_rows=fit_rows, fit_until=fit_until) for path in files]


def read_run(path: Path, *, fit_rows: int | None = None, fit_until: float | None = None) -> Run:
    """One CSV file as a Run (see the module docstring for the format)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    if not rows:
        raise DatasetError(f"{path}: empty file (needs a header row)")
    header = [name.strip() for name in rows[0]]
    if LABEL not in header:
        raise DatasetError(
            f"{path}: row 1: no {LABEL!r} column (header: {', '.join(header)}); add a 0/1 "
            f"{LABEL!r} column"
        )
    label_at = header.index(LABEL)
    signal_at = [i for i in range(1, len(header)) if i != label_at]
    if label_at == 0 or not signal_at:
        raise DatasetError(
            f"{path}: row 1: the first column must be the time, then signal columns and {LABEL!r}"
        )
    body = rows[1:]
    times = np.empty(len(body))
    values = np.empty((len(body), len(signal_at)))
    labels = np.empty(len(body), dtype=np.int8)
    for r, row in enumerate(body):
        line = r + 2
        if len(row) != len(header):
            raise DatasetError(
                f"{path}: row {line}: {len(row)} fields, the header has {len(header)}"
            )
        times[r] = _time(row[0], path, line, header[0])
        for j, i in enumerate(signal_at):
            values[r, j] = _number(row[i], path, line, header[i])
        labels[r] = _label(row[label_at], path, line)
        if r and times[r] <= times[r - 1]:
            raise DatasetError(
                f"{path}: row {line}, column {header[0]!r}: time {row[0]!r} is not after the "
                "row before it (rows must be in time order, without repeats)"
            )
    if fit_rows is not None:
        n_fit = fit_rows
    elif fit_until is not None:
        n_fit = int(np.searchsorted(times, fit_until))
    else:
        raise ValueError("give exactly one of fit_rows and fit_until")
    if n_fit < MIN_TRAINING_ROWS or n_fit >= len(body):
        raise DatasetError(
            f"{path}: {len(body)} rows, {n_fit} of them to train on: needs at least "
            f"{MIN_TRAINING_ROWS} training rows and one row to score after them"
        )
    index = pd.DatetimeIndex(pd.to_datetime(pd.Index(times), unit="s", utc=True), name=header[0])
    frame = pd.DataFrame(values, index=index, columns=[header[i] for i in signal_at])
    return Run(path.name, frame, labels, n_fit)


def parse_moment(text: str) -> float:
    """Epoch seconds from ISO 8601 (UTC unless it says otherwise) or from epoch seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither an ISO 8601 time nor epoch seconds") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise ValueError(f"time {text!r} is not finite")
    return value


def _time(text: str, path: Path, line: int, column: str) -> float:
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise DatasetError(f"{path}: row {line}, column {column!r}: {exc}") from None


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(
            f"{path}: row {line}, column {column!r}: {text.strip()!r} is not a finite number"
        )
    return value


def _label(text: str, path: Path, line: int) -> int:
    if text.strip() not in ("0", "1", "0.0", "1.0"):
        raise DatasetError(f"{path}: row {line}, column {LABEL!r}: {text.strip()!r} is not 0 or 1")
    return int(float(text))


@dataclass(frozen=True)
class DatasetResult:
    """Per file and overall numbers, and the settings they were measured with."""

    files: list[dict[str, object]]
    overall: dict[str, object]
    settings: dict[str, object]

    def as_json(self) -> dict[str, object]:
        return {"overall": self.overall, "files": self.files, "settings": self.settings}


def evaluate_runs(runs: Sequence[Run], detector: AnomalyDetector) -> DatasetResult:
    """Fit a clone of `detector` per run on its leading rows, predict the rest, score."""
    overall, files = RunScores("overall"), []
    for run in runs:
        scores = score_run(run, detector)
        overall.add(scores)
        files.append({"file": run.file, **scores.as_json()})
    return DatasetResult(files, overall.as_json(), detector.get_params())


def score_run(run: Run, template: AnomalyDetector) -> RunScores:
    """One run: fit on its training rows, predict the scored rows, count."""
    train, scored = run.signals.iloc[: run.fit_rows], run.signals.iloc[run.fit_rows :]
    detector = clone(template).fit(train)
    raw = detector.anomaly_scores(scored, history=train) > 1.0
    return score_verdicts(run, detector.predict(scored, history=train), raw)


def score_verdicts(run: Run, verdicts: np.ndarray, raw: np.ndarray | None = None) -> RunScores:
    """Count verdicts (1/0 per scored row) against the labels; `raw`: rows above the threshold
    before the alarm logic (default: the verdicts)."""
    verdict = np.asarray(verdicts, dtype=bool)
    raw = verdict if raw is None else np.asarray(raw, dtype=bool)
    truth = run.labels[run.fit_rows :].astype(bool)
    epoch_ns = run.signals.index.astype("int64").to_numpy()  # the time index, as DatetimeIndex.asi8
    times = epoch_ns[run.fit_rows :] / 1e9
    result = RunScores(run.file, rows=len(truth))
    result.tp = int(np.sum(verdict & truth))
    result.fp = int(np.sum(verdict & ~truth))
    result.fn = int(np.sum(~verdict & truth))
    result.tn = int(np.sum(~verdict & ~truth))
    result.raw_fp = int(np.sum(raw & ~truth))
    events, episodes = _segments(truth), _segments(verdict)
    result.events, result.episodes = len(events), len(episodes)
    for start, end in events:
        hits = np.flatnonzero(verdict[start:end])
        if hits.size:
            result.events_detected += 1
            result.delays_s.append(float(times[start + hits[0]] - times[start]))
    result.episodes_on_events = sum(1 for start, end in episodes if truth[start:end].any())
    return result


def _segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive True values."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


TABLE_COLUMNS = (
    ("ROWS", "rows", "d"),
    ("TP", "tp", "d"),
    ("FP", "fp", "d"),
    ("TN", "tn", "d"),
    ("FN", "fn", "d"),
    ("F1", "f1", ".3f"),
    ("FAR", "false_alarm_rate", ".3f"),
    ("MAR", "missed_alarm_rate", ".3f"),
    ("EV RECALL", "event_recall", ".2f"),
    ("EV PREC", "event_precision", ".2f"),
    ("DELAY s", "median_delay_s", ".0f"),
)


def format_dataset_table(result: DatasetResult) -> str:
    """One row per file and the overall row, columns of TABLE_COLUMNS."""
    rows = [("FILE", *(title for title, _, _ in TABLE_COLUMNS))]
    for scores in [*result.files, {**result.overall, "file": "OVERALL"}]:
        cells = [
            "-" if scores[key] is None else format(scores[key], spec)
            for _, key, spec in TABLE_COLUMNS
        ]
        rows.append((str(scores["file"]), *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def calibration_line(result: DatasetResult) -> str:
    """Requested against observed false-alarm rate, on the scored normal rows."""
    overall, rate = result.overall, result.settings["false_alarm_rate"]
    raw, final = overall["raw_false_alarm_rate"], overall["false_alarm_rate"]
    fp, tn = overall["fp"], overall["tn"]
    assert isinstance(fp, int) and isinstance(tn, int)  # counts, as RunScores.as_json gives them
    if raw is None:
        return f"false-alarm rate requested {rate:g}: no normal rows scored to check it on"
    return (
        f"false-alarm rate requested {rate:g} (share of normal rows above the threshold); "
        f"observed {raw:.3f} above it, {final:.3f} flagged after the alarm logic "
        f"({fp + tn} normal rows scored)"
    )
