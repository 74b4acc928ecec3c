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

from analytics.dataset import read_dataset
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
    assert [line.split()[0] for line in table[1:]] == ["run1.csv", "run2.csv", "OVERALL"]
    assert "false-alarm rate requested 0.02" in printed.err and "observed" in printed.err
    doc = json.loads(out.read_text())
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
    args = parse("--dataset", str(tmp_path))
    with pytest.raises(CommandError, match="--fit-rows N or --fit-until TIME"):
        await args.handler(args)
