"""Trained per-machine models on disk, in a format that is safe to load.

A model file is an .npz archive that numpy reads with allow_pickle=False: a JSON metadata
string, the fitted estimator's numeric arrays, and a SHA-256 digest over both. Loading never
unpickles, never imports a class named by the file (only the allow-listed ones below) and
re-checks the model on probe rows, so a corrupted or edited file, or a forest that did not
regrow identically (another scikit-learn), is a ModelError rather than silently wrong scores.

A loaded baseline, PCA or combined model scores with analytics.scoring's numpy arithmetic and
does not import scikit-learn (about 130 MB with the scipy and pandas it pulls in): `up` and
`detect` only score. The scikit-learn estimator is rebuilt on first use of `estimator`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from analytics.episodes import AlarmSettings
from analytics.errors import ModelError
from analytics.features import FEATURE_KINDS, WindowSpec
from analytics.scoring import Scorer, frozen_scorer

log = logging.getLogger(__name__)

FORMAT = "shopfloor-model/1"
PROBE_ROWS = 16
_SCALARS = (bool, int, float, str, type(None))
Step = dict[str, Any]  # {"name", "class", "params", "state"}: one fitted step, as saved


def library_versions() -> dict[str, str]:
    """The versions a model was trained with, stored in its metadata."""
    return {
        "format": FORMAT,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": version("scikit-learn"),
    }


@dataclass
class MachineModel:
    """One machine's trained detector and everything needed to use it on new data.

    `steps` is the fitted estimator as saved (each step's class, parameters and state);
    `scorer` scores with it, and `estimator` is the scikit-learn object (built on first use
    when the model was loaded)."""

    machine: str
    signals: tuple[str, ...]
    window: WindowSpec
    detector: str
    steps: list[Step]
    threshold: float  # the anomaly-score threshold, -offset_ of the detector
    alarm: AlarmSettings
    trained_from: float
    trained_to: float
    versions: dict[str, str] = field(default_factory=library_versions)

    @classmethod
    def fitted(cls, estimator: Any, **fields: Any) -> MachineModel:
        """A model of a fitted detector or Pipeline ending in one (other fields as named)."""
        model = cls(steps=_described(estimator), **fields)
        model.__dict__["estimator"] = estimator  # cached_property: no rebuild
        return model

    @cached_property
    def estimator(self) -> Any:
        """The fitted scikit-learn detector, or a Pipeline ending in one."""
        from sklearn.pipeline import Pipeline  # only here: loading must not need scikit-learn

        steps = [(step["name"], _restored(step)) for step in self.steps]
        return steps[0][1] if len(steps) == 1 else Pipeline(steps)

    @cached_property
    def scorer(self) -> Scorer:
        """Scores and top features per row: numpy alone where the detector allows."""
        return frozen_scorer(self.steps) or EstimatorScorer(self.estimator)

    @property
    def n_features(self) -> int:
        return int(self.steps[0]["state"]["n_features_in_"])


@dataclass(frozen=True)
class EstimatorScorer:
    """Scores with the scikit-learn estimator itself (a forest has no numpy-only scorer)."""

    estimator: Any

    def score_rows(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(anomaly scores, index of the top-contributing feature) per row; contributions are
        taken on the Pipeline's transformed features."""
        scores = -self.estimator.score_samples(features)
        detector, transformed = self.estimator, features
        if hasattr(self.estimator, "steps"):
            detector = self.estimator[-1]
            transformed = self.estimator[:-1].transform(features)
        return scores, np.argmax(detector.contributions(transformed), axis=1)


def save_model(path: Path, model: MachineModel) -> None:
    """Write the model to `path` (replaced atomically: a reader never sees half a file)."""
    arrays: dict[str, np.ndarray] = {}
    described = [_split(i, step, arrays) for i, step in enumerate(model.steps)]
    probe = _probe_rows(model)
    arrays["probe/rows"] = probe
    arrays["probe/scores"] = -model.scorer.score_rows(probe)[0]
    metadata = {
        "machine": model.machine,
        "signals": list(model.signals),
        "window": asdict(model.window),
        "detector": model.detector,
        "threshold": float(model.threshold),
        "alarm": model.alarm,
        "trained_from": float(model.trained_from),
        "trained_to": float(model.trained_to),
        "versions": model.versions,
        "steps": described,
    }
    text = json.dumps(metadata, sort_keys=True)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        np.savez_compressed(
            out,
            metadata=np.array(text),
            digest=np.array(_digest(text, arrays)),
            allow_pickle=False,  # as it is read: the file holds no pickle
            **arrays,
        )
    os.replace(partial, path)


def load_model(path: Path) -> MachineModel:
    """Read a model written by save_model; anything else or anything altered is a ModelError."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
        text = str(contents.pop("metadata"))
        digest = str(contents.pop("digest"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: not a readable model file ({exc})") from exc
    if digest != _digest(text, contents):
        raise ModelError(f"{path}: the file was altered or damaged after it was saved")
    try:
        return _model(json.loads(text), contents)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path}: inconsistent model file ({exc!r})") from exc


def check_signals(model: MachineModel, available: Sequence[str]) -> None:
    """ModelError naming the signals the model needs but the data lacks (and, to help, the
    data's signals the model was not trained on)."""
    missing = [s for s in model.signals if s not in set(available)]
    if not missing:
        return
    extra = sorted(set(available) - set(model.signals))
    raise ModelError(
        f"model for {model.machine!r} was trained on other signals: missing "
        f"{', '.join(missing)}"
        + (f"; the data also has {', '.join(extra)} which the model does not know" if extra else "")
        + "; retrain the model on this machine's current signals"
    )


def _described(estimator: Any) -> list[Step]:
    """A fitted estimator as steps; ModelError for a class that cannot be stored safely."""
    classes = _classes()
    steps: list[tuple[str | None, Any]] = (
        list(estimator.steps) if hasattr(estimator, "steps") else [(None, estimator)]
    )
    described = []
    for name, step in steps:
        cls: type = type(step)
        if classes.get(cls.__name__) is not cls:
            raise ModelError(
                f"cannot save a {type(step).__name__}: only {', '.join(classes)} "
                "(alone or in a Pipeline) can be stored safely"
            )
        fitted_state = getattr(step, "fitted_state", None)  # a detector's own, else sklearn's
        state = fitted_state() if fitted_state else _public_fitted(step)
        if not state:
            raise ModelError(f"cannot save an unfitted {type(step).__name__}")
        described.append(
            {
                "name": name,
                "class": type(step).__name__,
                "params": step.get_params(deep=False),
                "state": state,
            }
        )
    return described


def _classes() -> dict[str, type]:
    """The estimator classes a model file may name (scikit-learn imported here only)."""
    from sklearn.preprocessing import StandardScaler

    from analytics.detectors import DETECTORS, CombinedDetector

    return {cls.__name__: cls for cls in (*DETECTORS.values(), CombinedDetector, StandardScaler)}


def _split(index: int, step: Step, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A step as saved: class, parameters and scalar state; its arrays go into `arrays`."""
    scalars, names = {}, []
    for attr, value in step["state"].items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[f"{index}/{attr}"] = value
            names.append(attr)
        elif isinstance(value, (np.generic, *_SCALARS)):
            scalars[attr] = value.item() if isinstance(value, np.generic) else value
        else:
            raise ModelError(f"cannot save {step['class']}.{attr} ({type(value).__name__})")
    return {k: step[k] for k in ("name", "class", "params")} | {
        "scalars": scalars,
        "arrays": names,
    }


def _joined(index: int, described: dict[str, Any], arrays: dict[str, np.ndarray]) -> Step:
    """Inverse of `_split`."""
    # JSON has no tuples: a sequence parameter (CombinedDetector's names) comes back as one
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in described["params"].items()}
    state = dict(described["scalars"])
    state.update({attr: arrays[f"{index}/{attr}"] for attr in described["arrays"]})
    return {
        "name": described["name"],
        "class": described["class"],
        "params": params,
        "state": state,
    }


def _public_fitted(step: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(step).items() if k.endswith("_") and not k.startswith("_")}


def _model(metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> MachineModel:
    model = MachineModel(
        machine=metadata["machine"],
        signals=tuple(metadata["signals"]),
        window=WindowSpec(**metadata["window"]),
        detector=metadata["detector"],
        steps=[_joined(i, d, arrays) for i, d in enumerate(metadata["steps"])],
        threshold=metadata["threshold"],
        alarm=metadata["alarm"],
        trained_from=metadata["trained_from"],
        trained_to=metadata["trained_to"],
        versions=metadata["versions"],
    )
    expected = len(model.signals) * len(FEATURE_KINDS)
    if model.n_features != expected:
        raise ModelError(
            f"the estimator takes {model.n_features} features but {len(model.signals)} "
            f"signals give {expected}"
        )
    scores = -model.scorer.score_rows(arrays["probe/rows"])[0]
    if not np.allclose(scores, arrays["probe/scores"], rtol=1e-9, atol=0):
        raise ModelError(
            "the restored estimator does not reproduce its saved scores (saved with "
            f"scikit-learn {metadata['versions'].get('scikit-learn')}, this is "
            f"{version('scikit-learn')}); retrain the model"
        )
    return model


def _restored(step: Step) -> Any:
    """The scikit-learn object of a saved step, of an allow-listed class only."""
    cls = _classes().get(step["class"])
    if cls is None:
        raise ModelError(f"unknown estimator class {step['class']!r}")
    restored = cls(**step["params"])
    if hasattr(restored, "restore_fitted_state"):
        restored.restore_fitted_state(dict(step["state"]))
    else:
        for attr, value in step["state"].items():
            setattr(restored, attr, value)
    return restored


def _probe_rows(model: MachineModel) -> np.ndarray:
    """Rows around the training data's location, where the model's output is sensitive."""
    state = model.steps[0]["state"]  # a scaler, or the detector (a combination: its first part)
    location = next(
        (state[k] for k in ("mean_", "center_", "0.center_", "0.mean_") if k in state), None
    )
    scale = next((state[k] for k in ("scale_", "0.scale_") if k in state), None)
    width = model.n_features
    location = np.zeros(width) if location is None else location
    scale = np.ones(width) if scale is None else scale
    noise = np.random.default_rng(0).standard_normal((PROBE_ROWS, width))
    return location + 2.0 * scale * noise


def _digest(text: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(text.encode())
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


MODEL_SUFFIX = ".npz"


def load_models(folder: Path) -> dict[str, MachineModel]:
    """Every model in the folder; one that cannot be loaded is reported and left out."""
    models = {}
    for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
        try:
            model = load_model(path)
        except ModelError as exc:
            log.warning("skipping %s: %s", path.name, exc)
            continue
        models[model.machine] = model
    if not models:
        raise ModelError(f"no usable models in {folder}; run `shopfloor train` first")
    return models


def model_for(folder: Path, machine: str) -> MachineModel | None:
    """The machine's model in the folder; None when it has none, an error when it is unusable."""
    path = folder / f"{machine}{MODEL_SUFFIX}"
    if not path.exists():
        return None
    try:
        return load_model(path)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
