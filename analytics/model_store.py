"""Trained per-machine models on disk, in a format that is safe to load, and their versions.

A model file is an .npz archive that numpy reads with allow_pickle=False: a JSON metadata
string, the fitted estimator's numeric arrays, and a SHA-256 digest over both. Loading never
unpickles, never imports a class named by the file (only the allow-listed ones below) and
re-checks the model on probe rows, so a corrupted or edited file, or a forest that did not
regrow identically (another scikit-learn), is a ModelError rather than silently wrong scores.

A models folder keeps every version of a machine's model: `<machine>/v<N>.npz`, never changed
once written, and `<machine>/active`, the version in use (replaced atomically, so a rollback or
a model learnt from a label reaches a running detector by one small file). A folder of the
layout before versions (`<machine>.npz`) still loads, as version 0; the first new version of
such a machine moves that file to `v1.npz`.

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
import re
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from analytics.episodes import AlarmSettings
from analytics.errors import ModelError
from analytics.features import FEATURE_KINDS, WindowSpec
from analytics.scoring import Scorer, frozen_scorer
from core.private_files import FILE_MODE, replace_private

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


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: written into it, so it outlives the process."""

    version: int = 0  # 0: a file of the layout before versions
    created: float = 0.0
    reason: str = "trained"  # or "learnt from false alarm <label's episode id>"
    parent: int | None = None
    labels: tuple[str, ...] = ()  # episode ids of false alarms learnt, with its ancestors'

    @property
    def name(self) -> str:
        """The version as users and the `anomaly` points' model_version see it: v3."""
        return f"v{self.version}"


@dataclass(frozen=True)
class LearntPatterns:
    """False alarms an operator labelled, remembered by the model as normal patterns.

    Each pattern is the range every feature took over the labelled episode's alarming rows, in
    units of the feature's normal spread (`scale`), compressed far out (`_spread`). A row inside
    one pattern's ranges, widened by `radius`, in every feature is that pattern again: its
    score is capped below the threshold, the more the deeper inside. A range, not the rows
    themselves: a repeat of the pattern meets the other signals in another phase of their own
    normal swings, which the labelled rows saw somewhere but not in that combination. Any other
    row keeps the detector's score, so the model stays as sensitive as before (onset and
    severity) to every pattern it was not told about.
    """

    center: np.ndarray  # (F,) median of the normal rows
    scale: np.ndarray  # (F,) robust spread of the normal rows
    low: np.ndarray  # (P, F) each pattern's lowest value of each feature, spread units
    high: np.ndarray  # (P, F) and its highest

    radius: float
    linear: float

    def capped(self, features: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
        """`scores` of `features`, those of a remembered pattern capped below `threshold`."""
        outside = self.outside(features)
        return np.where(
            outside < self.radius, np.minimum(scores, threshold * outside / self.radius), scores
        )

    def outside(self, features: np.ndarray) -> np.ndarray:
        """Each row's distance outside the nearest pattern's ranges (0 inside), in its worst
        feature; numpy only, as scoring needs no scipy."""
        if len(self.low) == 0:
            return np.full(len(features), np.inf)
        z = self.spread(features)[:, None, :]
        beyond = np.maximum(self.low[None] - z, z - self.high[None]).clip(min=0.0)
        return beyond.max(axis=2).min(axis=1)

    def spread(self, rows: np.ndarray) -> np.ndarray:
        """Rows in units of the normal spread, compressed beyond `linear` units: a feature far
        out (a fault's) matches within a factor, one near normal within a number of spreads."""
        return np.arcsinh((rows - self.center) / (self.scale * self.linear))

    def with_pattern(self, rows: np.ndarray) -> LearntPatterns:
        """These and the pattern of `rows` (one labelled false alarm's alarming rows)."""
        if len(rows) == 0:
            return self
        z = self.spread(rows)
        low, high = np.vstack([self.low, z.min(axis=0)]), np.vstack([self.high, z.max(axis=0)])
        return replace(self, low=low, high=high)


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
    lineage: Lineage = field(default_factory=Lineage)
    # feature rows of its normal data (a sample), so that it can be refitted with more
    normal_rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    learnt: LearntPatterns | None = field(default=None, repr=False, compare=False)

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

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(anomaly scores, top feature index) per row: the detector's, and those of a pattern
        learnt as normal from a false alarm label capped below the threshold."""
        scores, top = self.scorer.score_rows(features)
        if self.learnt is not None:
            scores = self.learnt.capped(features, scores, self.threshold)
        return scores, top


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
    if model.normal_rows is not None:
        arrays["normal/rows"] = np.asarray(model.normal_rows, dtype=float)
    if model.learnt is not None:
        for part in ("center", "scale", "low", "high"):
            arrays[f"learnt/{part}"] = np.asarray(getattr(model.learnt, part), dtype=float)
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
        "lineage": asdict(model.lineage),
        "learnt_radius": model.learnt.radius if model.learnt is not None else None,
        "learnt_linear": model.learnt.linear if model.learnt is not None else None,
        "steps": described,
    }
    text = json.dumps(metadata, sort_keys=True)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    # 0600: the file holds feature rows of the plant's data (normal and learnt patterns)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.chmod(partial, FILE_MODE)  # an old partial file keeps its mode through O_TRUNC
    with os.fdopen(fd, "wb") as out:
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
        lineage=_lineage(metadata.get("lineage") or {}),
        normal_rows=arrays.get("normal/rows"),
        learnt=_learnt(metadata, arrays),
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


def _learnt(metadata: Mapping[str, Any], arrays: dict[str, np.ndarray]) -> LearntPatterns | None:
    if "learnt/low" not in arrays:
        return None
    return LearntPatterns(
        arrays["learnt/center"],
        arrays["learnt/scale"],
        arrays["learnt/low"],
        arrays["learnt/high"],
        radius=float(metadata["learnt_radius"]),
        linear=float(metadata["learnt_linear"]),
    )


def _lineage(stored: Mapping[str, Any]) -> Lineage:
    return Lineage(**{**stored, "labels": tuple(stored.get("labels", ()))})


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
ACTIVE = "active"  # the file in a machine's folder that names its version in use
_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.npz")


def has_models(folder: Path) -> bool:
    """Whether the folder holds any model, in either layout."""
    return any(folder.glob(f"*{MODEL_SUFFIX}")) or any(folder.glob(f"*/{ACTIVE}"))


def machines(folder: Path) -> list[str]:
    """The machines that have a model in the folder."""
    versioned = {p.parent.name for p in folder.glob(f"*/{ACTIVE}")}
    legacy = {p.stem for p in folder.glob(f"*{MODEL_SUFFIX}")}
    return sorted(versioned | legacy)


def load_models(folder: Path) -> dict[str, MachineModel]:
    """Every machine's active model; one that cannot be loaded is reported and left out."""
    models = {}
    for machine in machines(folder):
        try:
            model = model_for(folder, machine)
        except ModelError as exc:
            log.warning("skipping %s: %s", machine, exc)
            continue
        if model is not None:
            models[machine] = model
    if not models:
        raise ModelError(f"no usable models in {folder}; run `shopfloor train` first")
    return models


def model_for(folder: Path, machine: str) -> MachineModel | None:
    """The machine's active model; None when it has none, an error when it is unusable."""
    version = active_version(folder, machine)
    if version is None:
        return None
    return load_version(folder, machine, version)


def active_version(folder: Path, machine: str) -> int | None:
    """The number of the machine's version in use (0: a file of the old layout), None if it has
    no model. Reads one small file: cheap enough to ask every detection cycle."""
    try:
        text = (folder / machine / ACTIVE).read_text().strip()
    except FileNotFoundError:
        return 0 if (folder / f"{machine}{MODEL_SUFFIX}").exists() else None
    except OSError as exc:
        raise ModelError(f"{folder / machine / ACTIVE}: unreadable ({exc})") from None
    found = _VERSION_FILE.fullmatch(text + MODEL_SUFFIX)
    if found is None:
        raise ModelError(f"{folder / machine / ACTIVE}: {text!r} is not a version like v3")
    return int(found[1])


def load_version(folder: Path, machine: str, version: int) -> MachineModel:
    """One version of the machine's model (0: the old layout's file)."""
    path = _version_path(folder, machine, version)
    if not path.exists():
        known = ", ".join(f"v{v.version}" for v in versions(folder, machine)) or "none"
        raise ModelError(f"{machine} has no model version v{version} in {folder} (has: {known})")
    try:
        model = load_model(path)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    if model.machine != machine:
        raise ModelError(f"{path}: holds the model of {model.machine!r}, not {machine!r}")
    return replace(model, lineage=replace(model.lineage, version=version))


def versions(folder: Path, machine: str) -> list[Lineage]:
    """The lineage of every version of the machine's model, oldest first (metadata only)."""
    numbers = _numbers(folder, machine)
    if not numbers and (folder / f"{machine}{MODEL_SUFFIX}").exists():
        numbers = [0]
    return [_stored_lineage(_version_path(folder, machine, n), n) for n in numbers]


def save_version(
    folder: Path, model: MachineModel, reason: str, *, labels: tuple[str, ...] = ()
) -> MachineModel:
    """Save `model` as the machine's next version (its parent: the active one) and make it the
    active one; the model as saved, with its lineage."""
    _migrate(folder, model.machine)
    (folder / model.machine).mkdir(parents=True, exist_ok=True)
    parent = active_version(folder, model.machine)
    number = _reserve(folder, model.machine)
    saved = replace(model, lineage=Lineage(number, time.time(), reason, parent, labels))
    save_model(_version_path(folder, model.machine, number), saved)
    _activate(folder, model.machine, number)
    return saved


def rollback(folder: Path, machine: str, to: int | None = None) -> Lineage:
    """Make an earlier version active again: `to`, else the active one's parent (else the one
    before it). Versions are kept: a rollback can itself be undone. The now active lineage."""
    known = {v.version: v for v in versions(folder, machine)}
    if not known:
        have = ", ".join(machines(folder)) or "none"
        raise ModelError(f"no model of machine {machine!r} in {folder} (machines: {have})")
    active = active_version(folder, machine)
    if to is None:
        current = known.get(active or 0)
        to = current.parent if current and current.parent is not None else (active or 0) - 1
        if to not in known:
            raise ModelError(f"{machine}: v{active} has no earlier version to roll back to")
    if to not in known:
        have = ", ".join(v.name for v in known.values())
        raise ModelError(f"{machine} has no model version v{to} (has: {have})")
    load_version(folder, machine, to)  # refuse to activate a damaged file
    if to == 0:
        raise ModelError(f"{machine}: v0 is the old layout's file; train a new version instead")
    _activate(folder, machine, to)
    return known[to]


class ActiveVersions:
    """Notices when a machine's active version changes (a rollback, a model learnt from a
    label), so a running detector swaps models without a restart."""

    def __init__(self, folder: Path, models: Mapping[str, MachineModel]) -> None:
        self.folder = folder
        self._seen = {name: model.lineage.version for name, model in models.items()}

    def changed(self) -> list[MachineModel]:
        """The newly active models since the last call (blocking file reads: run in a thread);
        one that cannot be loaded is logged once and the old one kept."""
        found = []
        for machine, seen in self._seen.items():
            try:
                version = active_version(self.folder, machine)
                if version is None or version == seen:
                    continue
                self._seen[machine] = version
                found.append(load_version(self.folder, machine, version))
            except ModelError as exc:
                log.warning("%s: keeping the model in use: %s", machine, exc)
        return found


def _numbers(folder: Path, machine: str) -> list[int]:
    """The machine's version numbers, by their files' names."""
    return sorted(
        int(found[1])
        for path in (folder / machine).glob(f"v*{MODEL_SUFFIX}")
        if (found := _VERSION_FILE.fullmatch(path.name))
    )


def _reserve(folder: Path, machine: str) -> int:
    """The next version number, its file created empty (exclusively: two processes saving at
    once get two versions, never one overwritten); save_model then replaces it whole."""
    number = max(_numbers(folder, machine), default=0) + 1
    while True:
        try:
            os.close(os.open(_version_path(folder, machine, number), _EXCLUSIVE, FILE_MODE))
        except FileExistsError:
            number += 1
            continue
        return number


def _version_path(folder: Path, machine: str, version: int) -> Path:
    if version == 0:
        return folder / f"{machine}{MODEL_SUFFIX}"
    return folder / machine / f"v{version}{MODEL_SUFFIX}"


def _stored_lineage(path: Path, version: int) -> Lineage:
    """A version's lineage from its metadata alone, for listings."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = json.loads(str(archive["metadata"])).get("lineage") or {}
        lineage = _lineage(stored)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path}: not a readable model file ({exc})") from exc
    if not lineage.created:
        lineage = replace(lineage, created=path.stat().st_mtime)
    return replace(lineage, version=version)


def _migrate(folder: Path, machine: str) -> None:
    """The old layout's file of the machine becomes its version 1 (nothing else changes)."""
    legacy = _version_path(folder, machine, 0)
    if not legacy.exists() or (folder / machine / ACTIVE).exists():
        return
    model = load_version(folder, machine, 0)
    (folder / machine).mkdir(parents=True, exist_ok=True)
    created = legacy.stat().st_mtime
    save_model(_version_path(folder, machine, 1), replace(model, lineage=Lineage(1, created)))
    _activate(folder, machine, 1)
    legacy.unlink()


def _activate(folder: Path, machine: str, version: int) -> None:
    replace_private(folder / machine / ACTIVE, f"v{version}\n")
