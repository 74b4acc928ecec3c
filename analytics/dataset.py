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
from analytics.episodes import segments

LABEL = "label"
TRAIN = "train"  # optional: 1 for the leading rows that train, overriding --fit-rows/--fit-until
# empty cells (or these words) are missing values: forward-filled up to FILL_LIMIT_ROWS rows after
# the signal's last value (a logger that skipped a beat); rows of a longer gap are skipped and
# counted, never a stop
MISSING = frozenset({"", "nan", "na", "null", "none"})
FILL_LIMIT_ROWS = 10


class DatasetError(Exception):
    """A file that cannot be evaluated; the message names the file, row and column."""


@dataclass(frozen=True)
class Run:
    """One labelled run: signals with a time index (UTC), labels, how many rows train."""

    file: str
    signals: pd.DataFrame
    labels: np.ndarray
    fit_rows: int
    skipped_rows: int = 0  # rows left out: a signal missing for longer than FILL_LIMIT_ROWS


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
    skipped_rows: int = 0
    new_operating_modes: int = 0  # long episodes the detector learned as a new normal
    scored_seconds: float = 0.0
    delays_s: list[float] = field(default_factory=list)

    def add(self, other: RunScores) -> None:
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays_s += other.delays_s

    def as_json(self) -> dict[str, object]:
        normal, faulty = self.fp + self.tn, self.fn + self.tp
        false_episodes = self.episodes - self.episodes_on_events
        counts = asdict(self)
        del counts["delays_s"]
        return {
            **counts,
            "normal_rows": normal,
            **_rates(self.tp, self.fp, self.tn, self.fn),
            "raw_false_alarm_rate": _ratio(self.raw_fp, normal),
            "event_recall": _ratio(self.events_detected, self.events),
            "event_precision": _ratio(self.episodes_on_events, self.episodes),
            "median_delay_s": float(np.median(self.delays_s)) if self.delays_s else None,
            "alarm_episodes": self.episodes,
            "false_alarm_episodes": false_episodes,
            # per day of scored time: on normal-only records, the figure a plant lives with
            "false_alarm_episodes_per_day": _ratio(false_episodes * 86_400, self.scored_seconds),
            # the same rows all flagged: what any detector must beat on both F1 and FAR
            "flag_everything": {
                **_rates(faulty, normal, 0, 0),
                "event_recall": 1.0 if self.events else None,
            },
        }


_SUMMED = (
    "rows",
    "tp",
    "fp",
    "tn",
    "fn",
    "raw_fp",
    "events",
    "events_detected",
    "episodes",
    "episodes_on_events",
    "skipped_rows",
    "new_operating_modes",
    "scored_seconds",
)


def _rates(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """F1 = TP / (TP + (FP + FN) / 2), the false-alarm and the missed-alarm rate."""
    return {
        "f1": _ratio(tp, tp + (fp + fn) / 2),
        "false_alarm_rate": _ratio(fp, fp + tn),
        "missed_alarm_rate": _ratio(fn, fn + tp),
    }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def read_dataset(
    folder: Path, *, fit_rows: int | None = None, fit_until: float | None = None
) -> list[Run]:
    """Every *.csv file of the folder as a Run, sorted by name; DatasetError for the first bad
    one. At most one of fit_rows / fit_until (epoch seconds) says which leading rows train; a
    file's own `train` column overrides both (a file with neither is an error)."""
    if fit_rows is not None and fit_until is not None:
        raise ValueError("give at most one of fit_rows and fit_until")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of CSV files")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise DatasetError(f"{folder}: no .csv files in it")
    return [read_run(path, fit_rows=fit_rows, fit_until=fit_until) for path in files]


@dataclass
class _Columns:
    """Where the time, signals, label and (optional) train flags are in a file's rows."""

    header: list[str]
    signals: list[int]
    label: int
    train: int | None


def read_run(path: Path, *, fit_rows: int | None = None, fit_until: float | None = None) -> Run:
    """One CSV file as a Run (see the module docstring for the format)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    if not rows:
        raise DatasetError(f"{path}: empty file (needs a header row)")
    columns = _columns(path, rows[0])
    body = rows[1:]
    times = np.empty(len(body))
    values = np.empty((len(body), len(columns.signals)))
    labels = np.empty(len(body), dtype=np.int8)
    train = np.zeros(len(body), dtype=bool)
    for r, row in enumerate(body):
        line = r + 2
        if len(row) != len(columns.header):
            raise DatasetError(
                f"{path}: row {line}: {len(row)} fields, the header has {len(columns.header)}"
            )
        times[r] = _time(row[0], path, line, columns.header[0])
        for j, i in enumerate(columns.signals):
            values[r, j] = _number(row[i], path, line, columns.header[i])
        labels[r] = _flag(row[columns.label], path, line, LABEL)
        if columns.train is not None:
            train[r] = _flag(row[columns.train], path, line, TRAIN)
        if r and times[r] <= times[r - 1]:
            raise DatasetError(
                f"{path}: row {line}, column {columns.header[0]!r}: time {row[0]!r} is not after "
                "the row before it (rows must be in time order, without repeats)"
            )
    n_fit = _training_rows(
        path, times, train if columns.train is not None else None, fit_rows, fit_until
    )
    _check_split(path, len(body), n_fit, "")
    filled, keep = _fill_gaps(values)
    n_fit = int(keep[:n_fit].sum())
    _check_split(path, int(keep.sum()), n_fit, " with values (the rest in gaps)")
    index = pd.DatetimeIndex(
        pd.to_datetime(pd.Index(times[keep]), unit="s", utc=True), name=columns.header[0]
    )
    names = [columns.header[i] for i in columns.signals]
    frame = pd.DataFrame(filled[keep], index=index, columns=names)
    return Run(path.name, frame, labels[keep], n_fit, skipped_rows=int(np.sum(~keep)))


def _check_split(path: Path, rows: int, n_fit: int, which: str) -> None:
    if n_fit < MIN_TRAINING_ROWS or n_fit >= rows:
        raise DatasetError(
            f"{path}: {rows} rows{which}, {n_fit} of them to train on: needs at least "
            f"{MIN_TRAINING_ROWS} training rows and one row to score after them"
        )


def _columns(path: Path, first: list[str]) -> _Columns:
    header = [name.strip() for name in first]
    if LABEL not in header:
        raise DatasetError(
            f"{path}: row 1: no {LABEL!r} column (header: {', '.join(header)}); add a 0/1 "
            f"{LABEL!r} column"
        )
    label = header.index(LABEL)
    train = header.index(TRAIN) if TRAIN in header else None
    signals = [i for i in range(1, len(header)) if i not in (label, train)]
    if 0 in (label, train) or not signals:
        raise DatasetError(
            f"{path}: row 1: the first column must be the time, then signal columns and {LABEL!r}"
        )
    return _Columns(header, signals, label, train)


def _training_rows(
    path: Path,
    times: np.ndarray,
    train: np.ndarray | None,
    fit_rows: int | None,
    fit_until: float | None,
) -> int:
    """How many leading rows train: the file's `train` column, else fit_rows / fit_until."""
    if train is not None:
        n_fit = int(np.argmin(train)) if not train.all() else len(train)
        late = np.flatnonzero(train[n_fit:])
        if late.size:
            raise DatasetError(
                f"{path}: row {n_fit + late[0] + 2}, column {TRAIN!r}: 1 after a 0; the training "
                "rows must be one leading block (1s first, then 0s)"
            )
        return n_fit
    if fit_rows is not None:
        return fit_rows
    if fit_until is not None:
        return int(np.searchsorted(times, fit_until))
    raise DatasetError(
        f"{path}: no {TRAIN!r} column and no --fit-rows / --fit-until: say which leading rows "
        f"train (a 0/1 {TRAIN!r} column, 1 for the leading training rows, or one of the options)"
    )


def _fill_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values with empty cells forward-filled, rows kept): a cell up to FILL_LIMIT_ROWS rows
    after its signal's last value takes that value; a row with a cell further from one (or
    before any) is left out, as are the rows of a longer gap."""
    frame = pd.DataFrame(values)
    filled = frame.ffill(limit=FILL_LIMIT_ROWS).to_numpy()
    return filled, ~np.isnan(filled).any(axis=1)


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
    """The cell's number; NaN for an empty cell (filled or skipped later, never a stop)."""
    if text.strip().lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(
            f"{path}: row {line}, column {column!r}: {text.strip()!r} is not a finite number"
        )
    return value


def _flag(text: str, path: Path, line: int, column: str) -> int:
    if text.strip() not in ("0", "1", "0.0", "1.0"):
        raise DatasetError(f"{path}: row {line}, column {column!r}: {text.strip()!r} is not 0 or 1")
    return int(float(text))


@dataclass(frozen=True)
class DatasetResult:
    """Per file and overall numbers, and the settings they were measured with."""

    files: list[dict[str, object]]
    overall: dict[str, object]
    settings: dict[str, object]

    def as_json(self) -> dict[str, object]:
        return {
            "overall": self.overall,
            "files": self.files,
            "settings": self.settings,
            "calibration": {
                "requested": self.settings["false_alarm_rate"],
                "above_threshold": self.overall["raw_false_alarm_rate"],
                "flagged": self.overall["false_alarm_rate"],
                "normal_rows": self.overall["normal_rows"],
            },
        }


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
    explained = clone(template).fit(train).explain(scored, history=train)
    raw = explained["score"].to_numpy() > 1.0
    result = score_verdicts(run, explained["anomaly"].to_numpy(), raw)
    result.new_operating_modes = int(explained["new_mode"].sum())
    return result


def score_verdicts(run: Run, verdicts: np.ndarray, raw: np.ndarray | None = None) -> RunScores:
    """Count verdicts (1/0 per scored row) against the labels; `raw`: rows above the threshold
    before the alarm logic (default: the verdicts)."""
    verdict = np.asarray(verdicts, dtype=bool)
    raw = verdict if raw is None else np.asarray(raw, dtype=bool)
    truth = run.labels[run.fit_rows :].astype(bool)
    epoch_ns = run.signals.index.astype("int64").to_numpy()  # the time index, as DatetimeIndex.asi8
    times = epoch_ns[run.fit_rows :] / 1e9
    result = RunScores(run.file, rows=len(truth), skipped_rows=run.skipped_rows)
    result.scored_seconds = float(times[-1] - times[0]) if len(times) > 1 else 0.0
    result.tp = int(np.sum(verdict & truth))
    result.fp = int(np.sum(verdict & ~truth))
    result.fn = int(np.sum(~verdict & truth))
    result.tn = int(np.sum(~verdict & ~truth))
    result.raw_fp = int(np.sum(raw & ~truth))
    events, episodes = segments(truth), segments(verdict)
    result.events, result.episodes = len(events), len(episodes)
    for start, end in events:
        hits = np.flatnonzero(verdict[start:end])
        if hits.size:
            result.events_detected += 1
            result.delays_s.append(float(times[start + hits[0]] - times[start]))
    result.episodes_on_events = sum(1 for start, end in episodes if truth[start:end].any())
    return result


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
    ("FA EP/DAY", "false_alarm_episodes_per_day", ".1f"),
    ("SKIPPED", "skipped_rows", "d"),
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


def flag_everything_line(result: DatasetResult) -> str:
    """What flagging every scored row would score: the floor any detector must clear."""
    everything = result.overall["flag_everything"]
    assert isinstance(everything, dict)  # as RunScores.as_json makes it
    f1, far = everything["f1"], everything["false_alarm_rate"]
    cells = [f"F1 {'-' if f1 is None else format(f1, '.3f')}"]
    cells.append(f"false-alarm rate {'-' if far is None else format(far, '.3f')}")
    return "flag every row, on the same rows: " + ", ".join(cells)


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
