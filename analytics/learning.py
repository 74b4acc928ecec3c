"""Learning from an operator's false alarm label, for the online models.

The episode's feature rows, read back from the historian over the episode's span, become a
pattern the model remembers as normal (analytics.model_store.LearntPatterns: the range each
feature took over the episode's alarming rows): a later row inside one pattern's ranges in every
feature scores below the threshold; every other row keeps the detector's score. Refitting the
detector on its normal rows plus the labelled ones was tried and measured first: the
recalibrated threshold then widened with the labelled rows and the model stopped seeing another
fault on the same machine (docs/anomaly-detection.md, "Learning from
labels"). The result is a new model version that names the label among those it has learnt, so
a label is learnt once, however often it is applied and whatever restarts (`shopfloor label`
applies it; analytics.model_store keeps the versions, and a rollback undoes it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analytics.features import window_features
from analytics.model_store import (
    LearntPatterns,
    MachineModel,
    ModelError,
    check_signals,
    model_for,
    save_version,
)
from analytics.windows import read_telemetry
from core.storage import Historian

# How far outside a pattern's ranges a row may lie, in every feature, to be that pattern again,
# in asinh(z / LINEAR) of the feature's normal z-score: about one normal spread near normal, a
# factor of e**RADIUS (1.6) far out. Chosen on the simulated line (docs/anomaly-detection.md,
# "Learning from labels"), the tightest of 1.5, 1.0 and 0.5 that still quiets a repeated sensor
# drift on the compressor and the pasteurizer: an air leak is then caught 20 s later than
# without the label (1.0: 63 s, 1.5: 125 s), a fouled heat exchanger at the same second.
# bench/bench_labels.py replays the rule on the real datasets, none of them tuned to.
RADIUS = 0.5
LINEAR = 2.0
_MAD_TO_SD = 1.4826
_TINY = 1e-9  # a constant feature's spread: any change of it is far


async def episode_rows(
    historian: Historian, model: MachineModel, start_s: float, end_s: float
) -> np.ndarray:
    """The model's feature rows of its machine whose windows hold part of [start_s, end_s]
    (those ending up to a window after it: the return to normal belongs to the pattern)."""
    window = model.window
    since = start_s - window.window_s - window.period_s
    end_s += window.window_s
    found = await read_telemetry(historian, since, end_s + 1e-6, machine=model.machine)
    telemetry = found.get(model.machine)
    if telemetry is None:
        raise ModelError(f"no telemetry of {model.machine} in the historian for that span")
    check_signals(model, telemetry.signal_names())
    times, rows, _ = window_features(telemetry.frame(window, model.signals), window)
    rows = rows[(times >= start_s) & (times <= end_s)]
    if len(rows) == 0:
        raise ModelError(
            f"no complete window of {model.machine} in that span (gaps or bad-quality samples)"
        )
    return rows


def learn_false_alarm(model: MachineModel, rows: np.ndarray, label: str) -> MachineModel:
    """The model with `rows` remembered as a normal pattern and `label` (the episode's id)
    among the labels it has learnt. Not yet saved."""
    if model.learnt is not None:
        known = model.learnt
    elif model.normal_rows is not None:
        known = normal_patterns(model.normal_rows)
    else:
        raise ModelError(
            f"{model.machine}'s model {model.lineage.name} was saved without its normal data "
            "(before model versions); retrain it (`shopfloor train`) to learn from labels"
        )
    scores, _ = model.scorer.score_rows(rows)
    return replace(
        model,
        learnt=remember(known, rows, scores, model.threshold),
        lineage=replace(model.lineage, labels=(*model.lineage.labels, label)),
    )


def normal_patterns(normal_rows: np.ndarray) -> LearntPatterns:
    """Nothing remembered yet, with the spreads of a detector's normal feature rows that say
    how near a later row must be to a remembered one."""
    center = np.median(normal_rows, axis=0)
    spread = _MAD_TO_SD * np.median(np.abs(normal_rows - center), axis=0)
    nothing = np.empty((0, len(center)))
    return LearntPatterns(center, np.maximum(spread, _TINY), nothing, nothing, RADIUS, LINEAR)


def remember(
    known: LearntPatterns, rows: np.ndarray, scores: np.ndarray, threshold: float
) -> LearntPatterns:
    """`known` and the pattern of a labelled false alarm: its rows that scored above
    `threshold` (the rest is normal to the detector already). The one rule for learning a
    label: the online models (learn_false_alarm) and the replay bench use it."""
    return known.with_pattern(rows[scores > threshold])


@dataclass(frozen=True)
class Learnt:
    """What learning one false alarm did for one machine, for the operator."""

    machine: str
    model: MachineModel | None  # the new version; None when nothing was learnt
    outcome: str


async def learn_label(
    historian: Historian,
    folder: Path,
    label: str,
    machines: Sequence[str],
    start_s: float,
    end_s: float,
) -> list[Learnt]:
    """Learn the false alarm `label` (an episode's or incident's id, spanning [start_s, end_s])
    into each machine's active model in `folder`, as a new active version; a machine without a
    model, or whose model has learnt the label already, is left as it is."""
    done = []
    for machine in machines:
        model = await asyncio.to_thread(model_for, folder, machine)
        if model is None:
            done.append(Learnt(machine, None, f"no model in {folder}: nothing learnt"))
        elif label in model.lineage.labels:
            done.append(Learnt(machine, None, f"model {model.lineage.name} has learnt it already"))
        else:
            done.append(await _learn(historian, folder, model, label, start_s, end_s))
    return done


async def _learn(
    historian: Historian,
    folder: Path,
    model: MachineModel,
    label: str,
    start_s: float,
    end_s: float,
) -> Learnt:
    try:
        rows = await episode_rows(historian, model, start_s, end_s)
        learnt = learn_false_alarm(model, rows, label)
    except ModelError as exc:
        return Learnt(model.machine, None, f"nothing learnt: {exc}")
    reason = f"learnt from false alarm {label}"
    saved = await asyncio.to_thread(
        save_version, folder, learnt, reason, labels=learnt.lineage.labels
    )
    outcome = f"model {saved.lineage.name} learnt this pattern as normal (was {model.lineage.name})"
    return Learnt(model.machine, saved, outcome)
