"""Trained per-machine models on disk, in a format that is safe to load.

A model file is an .npz archive that numpy reads with allow_pickle=False: a JSON metadata
string, the fitted estimator's numeric arrays, and a SHA-256 digest over both. Loading never
unpickles, never imports a class named by the file (only the allow-listed ones below) and
re-checks the estimator on probe rows, so a corrupted or edited file, or a forest that did not
regrow identically (another scikit-learn), is a ModelError rather than silently wrong scores.
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
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from analytics.detectors import DETECTORS, CombinedDetector
from analytics.episodes import AlarmSettings
from analytics.errors import ModelError
from analytics.features import FEATURE_KINDS, WindowSpec

log = logging.getLogger(__name__)

FORMAT = "shopfloor-model/1"
PROBE_ROWS = 16
_CLASSES: dict[str, type] = {
    cls.__name__: cls for cls in (*DETECTORS.values(), CombinedDetector, StandardScaler)
}
_SCALARS = (bool, int, float, str, type(None))


def library_versions() -> dict[str, str]:
    """The versions a model was trained with, stored in its metadata."""
    return {
        "format": FORMAT,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


@dataclass
class MachineModel:
    """One machine's trained detector and everything needed to use it on new data."""

    machine: str
    signals: tuple[str, ...]
    window: WindowSpec
    detector: str
    estimator: Any  # a fitted detector, or a Pipeline ending in one
    threshold: float  # the anomaly-score threshold, -offset_ of the detector
    alarm: AlarmSettings
    trained_from: float
    trained_to: float
    versions: dict[str, str] = field(default_factory=library_versions)


def save_model(path: Path, model: MachineModel) -> None:
    """Write the model to `path` (replaced atomically: a reader never sees half a file)."""
    steps = _steps(model.estimator)
    arrays: dict[str, np.ndarray] = {}
    described = [_describe(i, name, est, arrays) for i, (name, est) in enumerate(steps)]
    probe = _probe_rows(steps[0][1])
    arrays["probe/rows"] = probe
    arrays["probe/scores"] = model.estimator.score_samples(probe)
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


def _steps(estimator: Any) -> list[tuple[str | None, Any]]:
    steps = list(estimator.steps) if isinstance(estimator, Pipeline) else [(None, estimator)]
    for _, step in steps:
        if _CLASSES.get(type(step).__name__) is not type(step):
            raise ModelError(
                f"cannot save a {type(step).__name__}: only {', '.join(_CLASSES)} "
                "(alone or in a Pipeline) can be stored safely"
            )
        check_is_fitted(step)
    return steps


def _describe(index: int, name: str | None, step: Any, arrays: dict[str, np.ndarray]) -> dict:
    """The step's class, parameters and scalar state; its array state goes into `arrays`."""
    state = step.fitted_state() if hasattr(step, "fitted_state") else _public_fitted(step)
    scalars, names = {}, []
    for attr, value in state.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[f"{index}/{attr}"] = value
            names.append(attr)
        elif isinstance(value, (np.generic, *_SCALARS)):
            scalars[attr] = value.item() if isinstance(value, np.generic) else value
        else:
            raise ModelError(f"cannot save {type(step).__name__}.{attr} ({type(value).__name__})")
    return {
        "name": name,
        "class": type(step).__name__,
        "params": step.get_params(deep=False),
        "scalars": scalars,
        "arrays": names,
    }


def _public_fitted(step: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(step).items() if k.endswith("_") and not k.startswith("_")}


def _model(metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> MachineModel:
    steps = [_restore(i, d, arrays) for i, d in enumerate(metadata["steps"])]
    estimator = steps[0][1] if len(steps) == 1 else Pipeline(steps)
    signals = tuple(metadata["signals"])
    expected = len(signals) * len(FEATURE_KINDS)
    if estimator.n_features_in_ != expected:
        raise ModelError(
            f"the estimator takes {estimator.n_features_in_} features but {len(signals)} "
            f"signals give {expected}"
        )
    if not np.allclose(
        estimator.score_samples(arrays["probe/rows"]), arrays["probe/scores"], rtol=1e-9, atol=0
    ):
        raise ModelError(
            "the restored estimator does not reproduce its saved scores (saved with "
            f"scikit-learn {metadata['versions'].get('scikit-learn')}, this is "
            f"{sklearn.__version__}); retrain the model"
        )
    return MachineModel(
        machine=metadata["machine"],
        signals=signals,
        window=WindowSpec(**metadata["window"]),
        detector=metadata["detector"],
        estimator=estimator,
        threshold=metadata["threshold"],
        alarm=metadata["alarm"],
        trained_from=metadata["trained_from"],
        trained_to=metadata["trained_to"],
        versions=metadata["versions"],
    )


def _restore(index: int, described: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple:
    cls = _CLASSES.get(described["class"])
    if cls is None:
        raise ModelError(f"unknown estimator class {described['class']!r}")
    # JSON has no tuples: a sequence parameter (CombinedDetector's names) comes back as one
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in described["params"].items()}
    step = cls(**params)
    state = dict(described["scalars"])
    state.update({attr: arrays[f"{index}/{attr}"] for attr in described["arrays"]})
    if hasattr(step, "restore_fitted_state"):
        step.restore_fitted_state(state)
    else:
        for attr, value in state.items():
            setattr(step, attr, value)
    return described["name"], step


def _probe_rows(first: Any) -> np.ndarray:
    """Rows around the training data's location, where the estimator's output is sensitive."""
    first = getattr(first, "detectors_", [first])[0]  # a combination: its first part's location
    location = getattr(first, "center_", getattr(first, "mean_", None))
    scale = getattr(first, "scale_", None)
    width = first.n_features_in_
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
