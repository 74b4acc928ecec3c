"""`shopfloor eval`: how well anomaly detection catches faults, in numbers.

With `--dataset DIR` it evaluates on a folder of labelled CSV runs (analytics.dataset: reading,
checking, detecting and scoring are all there; this module only wires the options). Without it:

Trains one model per machine on fault-free runs of the TRAINING seeds (thresholds are picked
there), then scores a labelled campaign (plc_sim.scenarios: every fault at several severities and
a long fault-free stretch) of HELD-BACK seeds it has never seen, straight from the process model
(no sockets, far faster than real time). The numbers follow analytics.evaluation's rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analytics.anomaly import AnomalyDetector
from analytics.dataset import (
    DatasetError,
    calibration_line,
    evaluate_runs,
    format_dataset_table,
    parse_moment,
    read_dataset,
)
from analytics.episodes import Episode
from analytics.evaluation import (
    GRACE_S,
    Evaluation,
    ScoredRun,
    Scores,
    TrueFault,
    evaluate,
    evaluation_json,
)
from analytics.features import Frame
from analytics.model_store import MachineModel
from analytics.training import (
    DEFAULT_ALARM,
    TrainingError,
    TrainingSettings,
    fit_frames,
    frame_episodes,
)
from plc_sim.scenarios import (
    FAULT_FREE_S,
    RECOVERY_S,
    SETTLE_S,
    LabelledRun,
    labelled_run,
    standard_campaign,
)
from plc_sim.spec import LineSpec, LineSpecError, load_line
from shopfloor.detection import add_training_options, training_settings
from shopfloor.options import CommandError, command

USER_ERRORS = (LineSpecError,)  # a line file (--line) that cannot be used: its message, exit 2

TRAINING_SEEDS = (1, 2)
HELD_BACK_SEEDS = (101, 102, 103)
TRAINING_S = 4 * 3600.0  # fault-free operation per training seed


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides the numbers: the models are fitted exactly as `shopfloor train`
    fits them (same settings, same function), then judged by analytics.evaluation's rules."""

    training: TrainingSettings = field(default_factory=TrainingSettings)
    grace_s: float = GRACE_S


@dataclass(frozen=True)
class Campaign:
    """The labelled runs' shape: shorter for tests, the standard one by default."""

    training_s: float = TRAINING_S
    fault_free_s: float = FAULT_FREE_S
    recovery_s: float = RECOVERY_S
    severities: tuple[float, ...] = (0.3, 0.6, 1.0)
    settle_s: float = SETTLE_S


def machine_frame(run: LabelledRun, machine: str, signals: Sequence[str] | None = None) -> Frame:
    """A machine's signals of a run; by default all, sorted by name as historian reads give
    them, so that eval fits the very model `train` fits on the same samples."""
    trace = run.machines[machine]
    names = tuple(signals) if signals is not None else tuple(sorted(trace.signals))
    columns = [trace.signals.index(s) for s in names]
    return Frame(run.times, names, trace.values[:, columns])


def train(
    runs: Sequence[LabelledRun], settings: TrainingSettings
) -> tuple[dict[str, MachineModel], list[str]]:
    """One model per machine from fault-free runs, by `shopfloor train`'s fit_frames; machines
    that cannot be trained are skipped, with the reason."""
    models, skipped = {}, []
    for machine in runs[0].machines:
        try:
            frames = [machine_frame(run, machine) for run in runs]
            models[machine] = fit_frames(machine, frames, settings)
        except TrainingError as exc:
            skipped.append(f"{machine}: {exc}")
    return models, skipped


def detect(run: LabelledRun, models: dict[str, MachineModel]) -> dict[str, list[Episode]]:
    """Episodes per machine of one run, by each model's threshold and alarm logic."""
    return {
        machine: frame_episodes(model, machine_frame(run, machine, model.signals))[2]
        for machine, model in models.items()
    }


def true_faults(run: LabelledRun) -> list[TrueFault]:
    return [
        TrueFault(
            f.machine,
            f.fault,
            f.signal,
            f.start_s,
            f.end_s,
            "gradual" if f.gradual else "abrupt",
            f.symptoms,
        )
        for f in run.faults
    ]


@dataclass(frozen=True)
class EvalResult:
    evaluation: Evaluation
    skipped: list[str]
    timings: dict[str, float]


def run_eval(
    spec: LineSpec,
    settings: EvalSettings,
    training_seeds: Sequence[int],
    seeds: Sequence[int],
    campaign: Campaign = Campaign(),
) -> EvalResult:
    """Train on the training seeds, evaluate on the held-back ones (CPU-bound: minutes)."""
    overlap = sorted(set(training_seeds) & set(seeds))
    if overlap:
        raise CommandError(
            f"seeds {overlap} are both training and held-back seeds; evaluation must use seeds "
            "the thresholds were not picked on"
        )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    training = [
        labelled_run(spec, seed=s, duration_s=campaign.training_s, settle_s=campaign.settle_s)
        for s in training_seeds
    ]
    models, skipped = train(training, settings.training)
    timings["train_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    runs = standard_campaign(
        spec,
        seeds,
        severities=campaign.severities,
        fault_free_s=campaign.fault_free_s,
        recovery_s=campaign.recovery_s,
        settle_s=campaign.settle_s,
    )
    timings["simulate_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    scored = [
        ScoredRun(detect(run, models), true_faults(run), run.times[0], run.times[-1], run.dt_s)
        for run in runs
    ]
    timings["detect_s"] = time.perf_counter() - clock
    return EvalResult(evaluate(scored, grace_s=settings.grace_s), skipped, timings)


def format_table(evaluation: Evaluation) -> str:
    """Per fault type, per kind (gradual/abrupt) and overall, one row each."""
    header = (
        "FAULT",
        "N",
        "CAUGHT",
        "PREC",
        "RECALL",
        "F1",
        "DELAY s",
        "P90 s",
        "DELAY smp",
        "P90 smp",
        "FA/DAY",
        "TOP SIG",
        "MAIN SIG",
    )
    rows = [header]
    rows += [_row(name, s) for name, s in evaluation.per_fault.items()]
    rows += [_row(f"({name})", s) for name, s in evaluation.per_kind.items()]
    rows.append(_row("OVERALL", evaluation.overall))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def _row(name: str, s: Scores) -> tuple[str, ...]:
    return (
        name,
        str(s.faults),
        str(s.caught),
        _num(s.precision, ".2f"),
        _num(s.recall, ".2f"),
        _num(s.f1, ".2f"),
        _num(s.median_delay_s, ".0f"),
        _num(s.p90_delay_s, ".0f"),
        _num(s.median_delay_samples, ".0f"),
        _num(s.p90_delay_samples, ".0f"),
        _num(s.false_alarms_per_day, ".2f"),
        _num(s.top_signal_accuracy, ".2f"),
        _num(s.main_signal_accuracy, ".2f"),
    )


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


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
    if (args.fit_rows is None) == (args.fit_until is None):
        raise CommandError("say which leading rows train: --fit-rows N or --fit-until TIME")
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
    print(calibration_line(result), file=sys.stderr)
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


def _alarm(training: TrainingSettings) -> dict[str, float]:
    return {**DEFAULT_ALARM, **(training.alarm or {})}


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
        help="with --dataset: train on each file's first N rows",
    )
    fit.add_argument(
        "--fit-until",
        type=_moment,
        metavar="TIME",
        help="with --dataset: train on each file's rows before TIME (ISO 8601 or epoch seconds)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    parser.set_defaults(campaign=Campaign())
