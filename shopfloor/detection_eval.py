"""`shopfloor eval`: how well anomaly detection catches faults, in numbers.

With `--dataset DIR` it evaluates on a folder of labelled CSV runs (analytics.dataset); without
it, on a labelled fault campaign of the simulated line (linelab.campaign). Reading, detecting
and scoring are all there: this module only wires the options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analytics.anomaly import AnomalyDetector
from analytics.dataset import (
    DatasetError,
    calibration_line,
    evaluate_runs,
    flag_everything_line,
    format_dataset_table,
    parse_moment,
    read_dataset,
)
from analytics.episodes import AlarmSettings
from analytics.evaluation import (
    evaluation_json,
    format_table,
)
from analytics.training import (
    DEFAULT_ALARM,
    TrainingSettings,
)
from linelab.campaign import (
    HELD_BACK_SEEDS,
    TRAINING_SEEDS,
    Campaign,
    CampaignError,
    EvalResult,
    EvalSettings,
    run_eval,
)
from plc_sim.spec import LineSpecError, load_line
from shopfloor.detection import add_training_options, training_settings
from shopfloor.options import CommandError, command

# a line file (--line) or a campaign that cannot be used: its message, exit 2
USER_ERRORS = (LineSpecError, CampaignError)


async def eval_command(args: argparse.Namespace) -> int:
    """Print the evaluation table; --json writes the same numbers."""
    if args.dataset is not None:
        return await dataset_command(args)
    if args.fit_rows is not None or args.fit_until is not None:
        raise CommandError("--fit-rows and --fit-until go with --dataset DIR")
    spec = load_line(args.line)
    settings = EvalSettings(training_settings(args))
    result = await asyncio.to_thread(
        run_eval, spec, settings, args.training_seeds, args.seeds, args.campaign
    )
    print(_summary(result, settings, args), file=sys.stderr)
    print(format_table(result.evaluation))
    if args.json:
        doc = evaluation_json(
            result.evaluation,
            seeds=args.seeds,
            training_seeds=args.training_seeds,
            detector=settings.training.detector,
        )
        doc["settings"] = _settings_json(settings.training)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


async def dataset_command(args: argparse.Namespace) -> int:
    """`eval --dataset DIR`: per file and overall point-wise and event numbers."""
    params = {"detector": args.detector}
    if args.false_alarm_rate is not None:
        params["false_alarm_rate"] = args.false_alarm_rate
    try:
        detector = AnomalyDetector(**params)
        runs = read_dataset(args.dataset, fit_rows=args.fit_rows, fit_until=args.fit_until)
        result = await asyncio.to_thread(evaluate_runs, runs, detector)
    except (DatasetError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(format_dataset_table(result))
    print(flag_everything_line(result))
    print(calibration_line(result))
    if args.json:
        args.json.write_text(json.dumps(result.as_json(), indent=2) + "\n", encoding="utf-8")
    return 0


def _summary(result: EvalResult, settings: EvalSettings, args: argparse.Namespace) -> str:
    ev, training = result.evaluation, settings.training
    window, alarm = training.window, _alarm(training)
    lines = [
        f"detector {training.detector}: trained on fault-free runs of seeds "
        f"{_seeds(args.training_seeds)} (thresholds picked there); evaluated on HELD-BACK seeds "
        f"{_seeds(args.seeds)}, never seen in training",
        f"window {window.window_s:g} s (short {window.short_s:g} s), step {window.step_s:g} s, "
        f"alarm {alarm['k']:g} of {alarm['n']:g}, hold-off {alarm['hold_off_s']:g} s, "
        f"false-alarm rate {training.false_alarm_rate:g} per window; a fault counts as caught "
        f"up to {ev.grace_s:g} s after it ends; {ev.fault_free_days:.2f} fault-free days; "
        f"{ev.secondary_episodes} secondary episodes (other machines during a fault) not counted",
        "took " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in result.timings.items()),
    ]
    lines += [f"skipped {reason}" for reason in result.skipped]
    return "\n".join(lines)


def _alarm(training: TrainingSettings) -> AlarmSettings:
    return {**DEFAULT_ALARM, **training.alarm} if training.alarm else DEFAULT_ALARM.copy()


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds))


def _settings_json(training: TrainingSettings) -> dict[str, object]:
    return {
        "detector": training.detector,
        "window": asdict(training.window),
        "alarm": _alarm(training),
        "false_alarm_rate": training.false_alarm_rate,
    }


def _moment(text: str) -> float:
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds are integers joined by commas, not {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def register(sub: Any) -> None:
    """Add `eval` to the `shopfloor` command line."""
    parser = command(
        sub,
        "eval",
        eval_command,
        "Score anomaly detection on a labelled simulated campaign: trained on training seeds, "
        "evaluated on held-back seeds; prints precision, recall, F1, delays, false alarms per "
        "day and top-signal accuracy per fault type.",
    )
    parser.add_argument(
        "--line", metavar="FILE", help="the line data file (default: the food-and-beverage line)"
    )
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=list(HELD_BACK_SEEDS),
        metavar="N,N",
        help=f"held-back seeds to evaluate on (default: {_seeds(HELD_BACK_SEEDS)})",
    )
    parser.add_argument(
        "--training-seeds",
        type=_seed_list,
        default=list(TRAINING_SEEDS),
        metavar="N,N",
        help=f"seeds whose fault-free runs train the models (default: {_seeds(TRAINING_SEEDS)})",
    )
    add_training_options(parser)
    parser.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="evaluate on a folder of labelled CSV runs instead (a time column first, numeric "
        "signal columns, a 0/1 label column); per file, the leading rows train",
    )
    fit = parser.add_mutually_exclusive_group()
    fit.add_argument(
        "--fit-rows",
        type=int,
        metavar="N",
        help="with --dataset: train on each file's first N rows (a file's own 0/1 'train' "
        "column overrides it)",
    )
    fit.add_argument(
        "--fit-until",
        type=_moment,
        metavar="TIME",
        help="with --dataset: train on each file's rows before TIME (ISO 8601 or epoch seconds)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    parser.set_defaults(campaign=Campaign())
