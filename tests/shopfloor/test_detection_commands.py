"""The train, detect and report commands through their handlers, as the CLI calls them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from analytics.detectors import DEFAULT_DETECTOR
from analytics.errors import ModelError
from core.sample import Quality, Sample
from historian import open_historian
from shopfloor import detection
from shopfloor.detection import parse_time
from shopfloor.options import CommandError

T0 = 1_767_225_600


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    detection.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_train_on_a_simulated_period_then_detect_for_a_while(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    args = parse("train", "--simulate", "15m", "--models", str(models))
    assert await args.handler(args) == 0
    out = capsys.readouterr().out
    assert sorted(p.parent.name for p in models.glob("*/v1.npz")) == [
        "air_compressor",
        "capper",
        "conveyor",
        "energy_meter",
        "filler",
        "pasteurizer",
    ]
    assert "current_a" in out and "threshold" in out

    # no telemetry for now in an empty historian: every machine is reported, nothing crashes
    db = f"sqlite:{tmp_path / 'empty.db'}"
    args = parse("detect", "--models", str(models), "--historian", db, "--duration", "1.5s")
    assert await args.handler(args) == 0
    assert "0 windows scored" in capsys.readouterr().out


async def test_machine_with_too_little_data_is_skipped_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:{tmp_path / 'h.db'}"
    samples = [
        Sample("line1", machine, "current_a", 8.0 + (t % 7) / 10, Quality.GOOD, (T0 + t) * 10**9)
        for machine, seconds in (("long", 400), ("short", 60))
        for t in range(seconds)
    ]
    async with open_historian(url) as historian:
        await historian.write_samples(samples)
    since, until = "2026-01-01T00:00:00", "2026-01-01T00:10:00"
    args = parse(
        "train",
        "--since",
        since,
        "--until",
        until,
        "--historian",
        url,
        "--models",
        str(tmp_path / "m"),
    )
    assert await args.handler(args) == 0
    out = capsys.readouterr().out
    assert f"long: {DEFAULT_DETECTOR} on 1 signals" in out
    assert "short: skipped: too little normal data" in out
    assert sorted(str(p.relative_to(tmp_path / "m")) for p in (tmp_path / "m").rglob("*")) == [
        "long",
        "long/active",
        "long/v1.npz",
    ]


async def test_user_mistakes_are_clear_errors(tmp_path: Path) -> None:
    args = parse("detect", "--models", str(tmp_path / "none"))
    with pytest.raises(ModelError, match="no usable models"):
        await args.handler(args)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "filler.npz").write_bytes(b"not a model")
    args = parse("detect", "--models", str(tmp_path / "bad"))
    with pytest.raises(ModelError, match="no usable models"):
        await args.handler(args)
    args = parse("report", "--machine", "filler", "--out", str(tmp_path / "x.png"))
    with pytest.raises(CommandError, match="--since"):
        await args.handler(args)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday-ish")
    assert parse_time("2026-01-01T00:00:00") == T0
