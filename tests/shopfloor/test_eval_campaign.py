"""`shopfloor eval` end to end through its command handler, on a short campaign."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from linelab.campaign import Campaign, CampaignError
from plc_sim.faults import FAULT_KINDS
from shopfloor import detection_eval

SHORT = Campaign(
    training_s=2400, fault_free_s=1800, recovery_s=600, severities=(1.0,), settle_s=900
)
ISSUE_KEYS = {
    "precision",
    "recall",
    "f1",
    "median_delay_s",
    "p90_delay_s",
    "false_alarms_per_day",
    "top_signal_accuracy",
}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shopfloor")
    detection_eval.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    args.campaign = SHORT
    return args


async def test_eval_prints_the_table_and_writes_the_issues_json(tmp_path: Path, capsys):
    out = tmp_path / "eval.json"
    args = parse("--seeds", "7", "--training-seeds", "1", "--json", str(out))
    assert await args.handler(args) == 0
    printed = capsys.readouterr()
    assert "HELD-BACK seeds 7" in printed.err and "seeds 1" in printed.err
    table = printed.out.splitlines()
    assert table[0].split()[:3] == ["FAULT", "N", "CAUGHT"]
    assert table[-1].startswith("OVERALL")
    assert {line.split()[0] for line in table[1:-1]} >= set(FAULT_KINDS)
    doc = json.loads(out.read_text())
    assert set(doc["overall"]) >= ISSUE_KEYS
    assert set(doc["per_fault"]) == set(FAULT_KINDS)
    assert all(set(scores) >= ISSUE_KEYS for scores in doc["per_fault"].values())
    assert doc["seeds"] == [7] and doc["training_seeds"] == [1]
    assert doc["detector"] == args.detector
    assert doc["overall"]["faults"] == 13  # every (machine, fault) pair once at severity 1.0
    assert 0.0 <= doc["overall"]["recall"] <= 1.0


async def test_training_seeds_cannot_be_evaluated_on():
    args = parse("--seeds", "1,2", "--training-seeds", "2")
    with pytest.raises(CampaignError, match=r"seeds \[2\] are both training and held-back"):
        await args.handler(args)


def test_an_unknown_detector_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--detector", "pca+oracle")
    error = capsys.readouterr().err
    assert "unknown detector 'pca+oracle'; use one of pca, forest, baseline" in error


def test_seed_lists_must_be_integers():
    with pytest.raises(SystemExit):
        parse("--seeds", "one,two")
