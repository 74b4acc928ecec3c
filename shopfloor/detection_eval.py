"""`shopfloor eval`: how well anomaly detection catches injected faults, in numbers.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analytics.detectors import DETECTORS, make_detector
from analytics.episodes import AlarmLogic, Episode
from analytics.evaluation import (
    GRACE_S,
    Evaluation,
    ScoredRun,
    Scores,
    TrueFault,
    evaluate,
    evaluation_json,
)
from analytics.features import Frame, WindowSpec, feature_signal, window_features
from analytics.windows import detection_signals
from plc_sim.scenarios import (
    FAULT_FREE_S,
    RECOVERY_S,
    SETTLE_S,
    LabelledRun,
    labelled_run,
    standard_campaign,
)
from plc_sim.spec import LineSpec, load_line
from shopfloor.options import CommandError, command

TRAINING_SEEDS = (1, 2)
HELD_BACK_SEEDS = (101, 102, 103)
TRAINING_S = 4 * 3600.0  # fault-free operation per training seed


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides the numbers; `detector` may combine names with '+'."""

    detector: str = "pca"
    window: WindowSpec = field(default_factory=WindowSpec)
    k: int = 3
    n: int = 5
    hold_off_s: float = 30.0
    false_alarm_rate: float = 0.001
    grace_s: float = GRACE_S

    def detector_names(self) -> list[str]:
        names = self.detector.split("+")
        unknown = [name for name in names if name not in DETECTORS]
        if unknown:
            raise CommandError(
                f"unknown detector {', '.join(unknown)}; use one of {', '.join(DETECTORS)} "
                "or several joined by '+' (e.g. baseline+pca)"
            )
        return names


@dataclass(frozen=True)
class Campaign:
    """The labelled runs' shape: shorter for tests, the standard one by default."""

    training_s: float = TRAINING_S
    fault_free_s: float = FAULT_FREE_S
    recovery_s: float = RECOVERY_S
    severities: tuple[float, ...] = (0.3, 0.6, 1.0)
    settle_s: float = SETTLE_S


@dataclass
class MachineScorer:
    """The fitted detectors of one machine.

    Each detector's anomaly score (-score_samples) is divided by its own threshold (-offset_),
    so 1.0 is the threshold of every detector and several combine by their maximum; the top
    signal of a row comes from the detector that is furthest over its threshold there.
    """

    signals: tuple[str, ...]
    estimators: list[Any]
    thresholds: list[float]

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(relative anomaly score per row, index of the top feature per row)."""
        ratios, tops = [], []
        for estimator, threshold in zip(self.estimators, self.thresholds, strict=True):
            ratios.append(-estimator.score_samples(features) / threshold)
            tops.append(np.argmax(estimator.contributions(features), axis=1))
        stacked = np.vstack(ratios)
        best = np.argmax(stacked, axis=0)
        columns = np.arange(stacked.shape[1])
        return stacked[best, columns], np.vstack(tops)[best, columns]


def machine_frame(run: LabelledRun, machine: str, signals: Sequence[str] | None = None) -> Frame:
    trace = run.machines[machine]
    names = tuple(signals) if signals is not None else trace.signals
    columns = [trace.signals.index(s) for s in names]
    return Frame(run.times, names, trace.values[:, columns])


def train(
    runs: Sequence[LabelledRun], settings: EvalSettings
) -> tuple[dict[str, MachineScorer], list[str]]:
    """One scorer per machine from fault-free runs; machines with nothing to model are skipped."""
    scorers, skipped = {}, []
    for machine in runs[0].machines:
        signals = detection_signals(machine_frame(runs[0], machine))
        if not signals:
            skipped.append(f"{machine}: no measurement worth modelling")
            continue
        rows = [
            window_features(machine_frame(run, machine, signals), settings.window)[1]
            for run in runs
        ]
        features = np.vstack(rows)
        estimators, thresholds = [], []
        for name in settings.detector_names():
            estimator = make_detector(name, false_alarm_rate=settings.false_alarm_rate)
            estimator.fit(features)
            threshold = -float(estimator.offset_)
            if not threshold > 0:
                raise CommandError(f"{machine}: {name} threshold {threshold} is not positive")
            estimators.append(estimator)
            thresholds.append(threshold)
        scorers[machine] = MachineScorer(signals, estimators, thresholds)
    return scorers, skipped


def detect(
    run: LabelledRun, scorers: dict[str, MachineScorer], settings: EvalSettings
) -> dict[str, list[Episode]]:
    """Episodes per machine of one run, by the batch alarm logic."""
    alarm = AlarmLogic(k=settings.k, n=settings.n, hold_off_s=settings.hold_off_s)
    episodes = {}
    for machine, scorer in scorers.items():
        frame = machine_frame(run, machine, scorer.signals)
        times, features, names = window_features(frame, settings.window)
        scores, tops = scorer.score(features)
        top_signals = [feature_signal(names[i]) for i in tops]
        episodes[machine] = alarm.episodes(times, scores, 1.0, top_signals)
    return episodes


def true_faults(run: LabelledRun) -> list[TrueFault]:
    return [
        TrueFault(
            f.machine, f.fault, f.signal, f.start_s, f.end_s, "gradual" if f.gradual else "abrupt"
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
    scorers, skipped = train(training, settings)
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
        ScoredRun(
            detect(run, scorers, settings), true_faults(run), run.times[0], run.times[-1], run.dt_s
        )
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
    )


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


async def eval_command(args: argparse.Namespace) -> int:
    """Print the evaluation table; --json writes the same numbers."""
    spec = load_line(args.line)
    settings = EvalSettings(
        detector=args.detector,
        window=WindowSpec(window_s=args.window, step_s=args.step),
        k=args.k,
        n=args.n,
        hold_off_s=args.hold_off,
        false_alarm_rate=args.false_alarm_rate,
    )
    settings.detector_names()
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
            detector=args.detector,
        )
        doc["settings"] = _settings_json(settings)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


def _summary(result: EvalResult, settings: EvalSettings, args: argparse.Namespace) -> str:
    ev = result.evaluation
    lines = [
        f"detector {settings.detector}: trained on fault-free runs of seeds "
        f"{_seeds(args.training_seeds)} (thresholds picked there); evaluated on HELD-BACK seeds "
        f"{_seeds(args.seeds)}, never seen in training",
        f"window {settings.window.window_s:g} s, step {settings.window.step_s:g} s, alarm "
        f"{settings.k} of {settings.n}, hold-off {settings.hold_off_s:g} s, false-alarm rate "
        f"{settings.false_alarm_rate:g}; a fault counts as caught up to {ev.grace_s:g} s after it "
        f"ends; {ev.fault_free_days:.2f} fault-free days; {ev.secondary_episodes} secondary "
        "episodes (other machines during a fault) not counted",
        "took " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in result.timings.items()),
    ]
    lines += [f"skipped {reason}" for reason in result.skipped]
    return "\n".join(lines)


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds))


def _settings_json(settings: EvalSettings) -> dict[str, object]:
    return {
        "window_s": settings.window.window_s,
        "step_s": settings.window.step_s,
        "k": settings.k,
        "n": settings.n,
        "hold_off_s": settings.hold_off_s,
        "false_alarm_rate": settings.false_alarm_rate,
    }


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
    defaults = EvalSettings()
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
    parser.add_argument(
        "--detector",
        default=defaults.detector,
        metavar="NAME",
        help=f"{', '.join(DETECTORS)}, or several joined by '+' (default: {defaults.detector})",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=defaults.window.window_s,
        metavar="S",
        help="window length in seconds",
    )
    parser.add_argument(
        "--step",
        type=float,
        default=defaults.window.step_s,
        metavar="S",
        help="seconds between feature rows",
    )
    parser.add_argument(
        "--k", type=int, default=defaults.k, help="rows over threshold that open an episode..."
    )
    parser.add_argument(
        "--n", type=int, default=defaults.n, help="...within this many consecutive rows"
    )
    parser.add_argument(
        "--hold-off",
        type=float,
        default=defaults.hold_off_s,
        metavar="S",
        help="seconds below threshold that close an episode",
    )
    parser.add_argument(
        "--false-alarm-rate",
        type=float,
        default=defaults.false_alarm_rate,
        metavar="P",
        help="share of normal training rows allowed over the threshold",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    parser.set_defaults(campaign=Campaign())
