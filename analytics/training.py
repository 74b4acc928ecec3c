"""The one training path of `train`, `detect`, `up` and `eval`: fit a machine's model on normal
frames and score frames as the online detector does. Domain logic only: no CLI, simulator or
connector imports, so a notebook can use it as `shopfloor train` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analytics.detectors import DEFAULT_DETECTOR, make_detector
from analytics.episodes import AlarmLogic, AlarmSettings, Episode
from analytics.errors import ModelError
from analytics.features import Frame, WindowSpec, feature_signal, window_features
from analytics.model_store import MachineModel, save_version
from analytics.windows import MachineTelemetry, detection_signals, select_signals

# The tuned configuration (shopfloor eval; docs/anomaly-detection.md): train, detect, up and
# eval all use it. The rate is of threshold crossings per feature row of normal running.
# k=3 rides out a single noisy short-window row; a 300 s hold-off keeps a fault that dips under
# the threshold one episode. 3e-7 crossings per window and machine is ~0.03 a day.
DEFAULT_ALARM: AlarmSettings = {"k": 3, "n": 5, "hold_off_s": 300.0}
FALSE_ALARM_RATE = 3e-7
MIN_TRAINING_ROWS = 300  # feature rows: five minutes at the default 1 s step
# a model keeps this many of its normal feature rows (evenly spread): their spread is the unit
# in which analytics.learning matches a false alarm's pattern, and a later refit can use them
KEPT_NORMAL_ROWS = 8000


class TrainingError(Exception):
    """One machine cannot be trained (too little or unusable data); the others go on."""


@dataclass(frozen=True)
class TrainingSettings:
    """How every machine's model is fitted."""

    detector: str = DEFAULT_DETECTOR
    window: WindowSpec = field(default_factory=WindowSpec)
    false_alarm_rate: float = FALSE_ALARM_RATE
    alarm: AlarmSettings | None = None
    min_rows: int = MIN_TRAINING_ROWS


def fit_machine_model(telemetry: MachineTelemetry, settings: TrainingSettings) -> MachineModel:
    """Fit one machine's model on normal telemetry: signals chosen from the data, threshold
    calibrated on it. TrainingError says why a machine cannot be trained."""
    return fit_frames(telemetry.machine, [telemetry.frame(settings.window)], settings)


def fit_frames(machine: str, frames: Sequence[Frame], settings: TrainingSettings) -> MachineModel:
    """Fit one machine's model on normal frames (separate runs: no window spans two), the
    signals chosen on the first. The one training path of `train`, `up` and `eval`."""
    signals = detection_signals(frames[0])
    if not signals:
        raise TrainingError("no measurement signals (only states, flags, counters, constants)")
    rows = [window_features(select_signals(f, signals), settings.window)[:2] for f in frames]
    times = np.concatenate([t for t, _ in rows])
    if len(times) < settings.min_rows:
        raise TrainingError(
            f"too little normal data: {len(times)} complete windows, needs {settings.min_rows}"
        )
    estimator = make_detector(settings.detector, false_alarm_rate=settings.false_alarm_rate)
    normal = np.vstack([X for _, X in rows])
    estimator.fit(normal)
    return MachineModel.fitted(
        estimator,
        machine=machine,
        signals=signals,
        window=settings.window,
        detector=settings.detector,
        threshold=float(-estimator.offset_),
        alarm=(settings.alarm or DEFAULT_ALARM).copy(),
        trained_from=float(times.min()),
        trained_to=float(times.max()),
        normal_rows=kept_rows(normal),
    )


def kept_rows(rows: np.ndarray, most: int = KEPT_NORMAL_ROWS) -> np.ndarray:
    """At most `most` of `rows`, evenly spread over them (they are in time order)."""
    if len(rows) <= most:
        return rows
    return rows[np.linspace(0, len(rows) - 1, most).round().astype(int)]


def score_frame(model: MachineModel, frame: Frame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(row times, anomaly scores, top signals) of a frame of the model's signals, scored as
    the online detector scores them."""
    times, features, names = window_features(frame, model.window)
    if len(times) == 0:
        return times, times, []
    scores, top = model.score(features)
    return times, scores, [feature_signal(names[i]) for i in top]


def frame_episodes(
    model: MachineModel, frame: Frame
) -> tuple[np.ndarray, np.ndarray, list[Episode]]:
    """(row times, anomaly scores, episodes) of a frame by the model's threshold and alarm
    logic."""
    times, scores, tops = score_frame(model, frame)
    episodes = AlarmLogic(**model.alarm).episodes(times, scores, model.threshold, tops)
    return times, scores, episodes


def train_models(
    telemetry: dict[str, MachineTelemetry], settings: TrainingSettings, folder: Path
) -> tuple[list[MachineModel], dict[str, str]]:
    """Fit a model per machine and save it as its new active version; (saved models,
    {skipped machine: why}). A folder that cannot be written is a ModelError naming it."""
    saved, skipped = [], {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(telemetry):
            try:
                model = fit_machine_model(telemetry[name], settings)
            except TrainingError as exc:
                skipped[name] = str(exc)
                continue
            saved.append(save_version(folder, model, "trained"))
    except OSError as exc:
        raise ModelError(
            f"cannot write models into {folder}: {exc.strerror or exc}; pick another --models"
        ) from None
    return saved, skipped
