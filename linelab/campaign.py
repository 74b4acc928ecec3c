"""How well anomaly detection catches faults on the simulated line, in numbers.

Trains one model per machine on fault-free runs of the TRAINING seeds (thresholds are picked
there), then scores a labelled campaign (plc_sim.scenarios: every fault at several severities and
a long fault-free stretch) of HELD-BACK seeds it has never seen, straight from the process model
(no sockets, far faster than real time). The numbers follow analytics.evaluation's rules.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from analytics.episodes import Episode
from analytics.evaluation import GRACE_S, Evaluation, ScoredRun, TrueFault, evaluate
from analytics.features import Frame
from analytics.model_store import MachineModel
from analytics.training import TrainingError, TrainingSettings, fit_frames, frame_episodes
from plc_sim.scenarios import (
    FAULT_FREE_S,
    RECOVERY_S,
    SETTLE_S,
    LabelledRun,
    labelled_run,
    standard_campaign,
)
from plc_sim.spec import LineSpec


class CampaignError(ValueError):
    """A campaign that cannot be run as asked; the message says why."""


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
        raise CampaignError(
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
        ScoredRun(
            detect(run, models),
            true_faults(run),
            run.times[0],
            run.times[-1],
            run.dt_s,
            tuple(spec.machines),
            max((model.alarm["hold_off_s"] for model in models.values()), default=0.0),
        )
        for run in runs
    ]
    timings["detect_s"] = time.perf_counter() - clock
    return EvalResult(evaluate(scored, grace_s=settings.grace_s), skipped, timings)
