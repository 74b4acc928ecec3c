"""`shopfloor eval --dataset DIR` on small synthetic CSV runs written by the test: the numbers,
the JSON shape, and one clear line for every bad file."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analytics.anomaly import AnomalyDetector
from analytics.dataset import FILL_LIMIT_ROWS, DatasetError, evaluate_runs, read_dataset
from shopfloor import detection_eval
from shopfloor.options import CommandError

ISSUE_KEYS = {
    "tp",
    "fp",
    "tn",
    "fn",
    "f1",
    "false_alarm_rate",
    "missed_alarm_rate",
    "event_recall",
    "event_precision",
    "median_delay_s",
}


def write_run(path: Path, seed: int, *, epoch: bool = False, fault_at: int = 600) -> None:
    """1000 rows at 1 Hz of four correlated signals; from `fault_at` on, `b` is offset."""
    rng = np.random.default_rng(seed)
    t = np.arange(1000)
    load = np.sin(t / 60.0)
    values = np.column_stack([g * load + rng.normal(0, 0.2, 1000) for g in (1.0, -0.8, 0.5, 2.0)])
    values[fault_at:, 1] += 2.0
    labels = (t >= fault_at).astype(int)
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    lines = ["time,a,b,c,d,label"]
    for i in range(1000):
        stamp = (
            str(start + i)
            if epoch
            else f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        )
        lines.append(",".join([stamp, *(f"{v:.4f}" for v in values[i]), str(labels[i])]))
    path.write_text("\n".join(lines) + "\n")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shopfloor")
    detection_eval.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["eval", *argv])


async def test_eval_on_a_dataset_prints_the_table_and_writes_the_json(tmp_path: Path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_run(data / "run1.csv", 1)
    write_run(data / "run2.csv", 2, epoch=True, fault_at=700)
    out = tmp_path / "eval.json"
    args = parse("--dataset", str(data), "--fit-rows", "400", "--json", str(out))
    assert await args.handler(args) == 0
    printed = capsys.readouterr()
    table = printed.out.splitlines()
    assert table[0].split()[:6] == ["FILE", "ROWS", "TP", "FP", "TN", "FN"]
    assert [line.split()[0] for line in table[1:4]] == ["run1.csv", "run2.csv", "OVERALL"]
    calibration = next(line for line in table if line.startswith("false-alarm rate requested"))
    assert "requested 0.02" in calibration and "observed" in calibration  # on stdout
    assert any(line.startswith("flag every row, on the same rows: F1 ") for line in table)
    doc = json.loads(out.read_text())
    assert doc["calibration"]["requested"] == 0.02
    assert doc["calibration"]["above_threshold"] == doc["overall"]["raw_false_alarm_rate"]
    assert doc["calibration"]["normal_rows"] == doc["overall"]["fp"] + doc["overall"]["tn"]
    assert [f["file"] for f in doc["files"]] == ["run1.csv", "run2.csv"]
    for scores in [doc["overall"], *doc["files"]]:
        assert set(scores) >= ISSUE_KEYS
        tp, fp, tn, fn = (scores[k] for k in ("tp", "fp", "tn", "fn"))
        assert scores["f1"] == pytest.approx(tp / (tp + (fp + fn) / 2))
        assert scores["false_alarm_rate"] == pytest.approx(fp / (fp + tn))
        assert scores["missed_alarm_rate"] == pytest.approx(fn / (fn + tp))
    files = doc["files"]
    assert [f["tp"] + f["fp"] + f["tn"] + f["fn"] for f in files] == [600, 600]  # every row
    assert [f["tp"] + f["fn"] for f in files] == [400, 300]
    assert doc["overall"]["tp"] == sum(f["tp"] for f in files)
    assert doc["overall"]["f1"] > 0.9 and doc["overall"]["false_alarm_rate"] < 0.1
    assert doc["overall"]["event_recall"] == 1.0 and doc["overall"]["events"] == 2
    assert 0 <= doc["overall"]["median_delay_s"] < 30
    for scores in [doc["overall"], *files]:
        assert scores["alarm_episodes"] == scores["episodes"]
        everything = scores["flag_everything"]
        assert everything["false_alarm_rate"] == 1.0 and everything["event_recall"] == 1.0
        faulty, normal = scores["tp"] + scores["fn"], scores["fp"] + scores["tn"]
        assert everything["f1"] == pytest.approx(faulty / (faulty + normal / 2))
    assert [f["scored_seconds"] for f in files] == [599.0, 599.0]  # 600 rows at 1 Hz
    assert doc["overall"]["scored_seconds"] == 1198.0
    assert doc["overall"]["new_operating_modes"] == sum(f["new_operating_modes"] for f in files)
    false_episodes = doc["overall"]["false_alarm_episodes"]
    assert doc["overall"]["false_alarm_episodes_per_day"] == pytest.approx(
        false_episodes * 86_400 / 1198.0
    )


def test_fit_until_picks_the_same_rows_as_fit_rows(tmp_path: Path) -> None:
    write_run(tmp_path / "run.csv", 3)
    by_rows = read_dataset(tmp_path, fit_rows=400)[0]
    by_time = read_dataset(tmp_path, fit_until=1_767_225_600 + 400)[0]
    assert by_time.fit_rows == by_rows.fit_rows == 400
    assert str(by_rows.signals.index[0]) == "2026-01-01 00:00:00+00:00"


BAD_FILES = {
    "no label column": ("time,a,b\n2026-01-01T00:00:00Z,1,2\n", r"row 1: no 'label' column"),
    "not a number": (
        "time,a,label\n" + "".join(f"{i},1.0,0\n" for i in range(30)) + "30,high,0\n",
        r"row 32, column 'a': 'high' is not a finite number",
    ),
    "label not 0/1": (
        "time,a,label\n" + "".join(f"{i},1.0,0\n" for i in range(30)) + "30,1.0,2\n",
        r"row 32, column 'label': '2' is not 0 or 1",
    ),
    "bad time": (
        "time,a,label\n0,1,0\nyesterday,1,0\n",
        r"row 3, column 'time': 'yesterday' is neither an ISO 8601 time nor epoch seconds",
    ),
    "time going back": ("time,a,label\n5,1,0\n4,1,0\n", r"row 3, column 'time': time '4'"),
    "too few rows": (
        "time,a,label\n" + "".join(f"{i},1.0,0\n" for i in range(30)),
        r"30 rows, 400 of them to train on: needs at least 20 training rows and one row",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
async def test_a_bad_file_is_one_clear_line_naming_file_row_and_column(
    tmp_path: Path, case: str
) -> None:
    text, message = BAD_FILES[case]
    (tmp_path / "bad.csv").write_text(text)
    args = parse("--dataset", str(tmp_path), "--fit-rows", "400")
    with pytest.raises(CommandError, match=message) as caught:
        await args.handler(args)
    assert "bad.csv" in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_exits_2_with_one_line_for_a_bad_dataset(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("time,a\n0,1\n")
    command = ["eval", "--dataset", str(tmp_path), "--fit-rows", "10"]
    done = subprocess.run(
        [sys.executable, "-m", "shopfloor.cli", *command],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "bad.csv: row 1: no 'label' column" in done.stderr
    assert "Traceback" not in done.stderr


async def test_fit_options_need_a_dataset_and_a_dataset_needs_one(tmp_path: Path) -> None:
    args = parse("--fit-rows", "400")
    with pytest.raises(CommandError, match="go with --dataset"):
        await args.handler(args)
    write_run(tmp_path / "run.csv", 4)
    args = parse("--dataset", str(tmp_path))
    with pytest.raises(CommandError, match=r"run\.csv: no 'train' column and no --fit-rows"):
        await args.handler(args)


def with_column(path: Path, name: str, cells: list[str]) -> None:
    """Add a column (header `name`, one cell per data row) to a CSV run."""
    lines = path.read_text().splitlines()
    body = [f"{line},{cell}" for line, cell in zip(lines[1:], cells, strict=True)]
    path.write_text("\n".join([f"{lines[0]},{name}", *body]) + "\n")


def test_a_train_column_picks_each_files_training_rows(tmp_path: Path) -> None:
    """Each file says its own training block; the options are overridden by it."""
    for name, fit in (("short.csv", 300), ("long.csv", 500)):
        write_run(tmp_path / name, 5)
        with_column(tmp_path / name, "train", ["1"] * fit + ["0"] * (1000 - fit))
    runs = read_dataset(tmp_path, fit_rows=400)
    assert [(r.file, r.fit_rows) for r in runs] == [("long.csv", 500), ("short.csv", 300)]
    assert all(list(r.signals.columns) == ["a", "b", "c", "d"] for r in runs)


def test_a_train_column_must_be_one_leading_block(tmp_path: Path) -> None:
    write_run(tmp_path / "run.csv", 6)
    with_column(tmp_path / "run.csv", "train", ["1"] * 300 + ["0"] * 100 + ["1"] + ["0"] * 599)
    with pytest.raises(DatasetError, match=r"row 402, column 'train': 1 after a 0"):
        read_dataset(tmp_path)


def blank(path: Path, column: int, rows: range) -> None:
    """Empty the cells of one signal column (1-based after the time) in these data rows."""
    lines = path.read_text().splitlines()
    for r in rows:
        cells = lines[r + 1].split(",")
        cells[column] = ""
        lines[r + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_short_gaps_are_filled_and_long_ones_skipped_and_counted(tmp_path: Path) -> None:
    """An empty cell never stops the run: a short gap takes the last value, the rows of a gap
    longer than the fill limit are left out and counted."""
    write_run(tmp_path / "run.csv", 7)
    blank(tmp_path / "run.csv", 2, range(450, 450 + FILL_LIMIT_ROWS))  # filled
    blank(tmp_path / "run.csv", 3, range(700, 750))  # too long: the rows past the limit go
    (run,) = read_dataset(tmp_path, fit_rows=400)
    assert run.skipped_rows == 50 - FILL_LIMIT_ROWS
    assert len(run.signals) == len(run.labels) == 1000 - run.skipped_rows
    filled = run.signals["b"].iloc[450 : 450 + FILL_LIMIT_ROWS]
    assert (filled == run.signals["b"].iloc[449]).all()
    result = evaluate_runs([run], AnomalyDetector())
    assert result.overall["skipped_rows"] == 50 - FILL_LIMIT_ROWS
    assert result.overall["rows"] == 600 - run.skipped_rows
