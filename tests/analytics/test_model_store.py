"""Model files: identical scores after a round trip, no pickle inside, clear errors."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from analytics.detectors import DETECTORS, make_detector
from analytics.features import WindowSpec, feature_names
from analytics.model_store import (
    MachineModel,
    ModelError,
    check_signals,
    load_model,
    save_model,
)

SIGNALS = ("current_a", "motor_temp_c", "speed_hz")
NAMES = [*DETECTORS, "baseline+pca"]  # every single detector and the default combination


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 15))
    return base + 0.2 * rng.normal(size=(n, 15)) + np.linspace(1, 90, 15)


def _model(estimator: object, detector: str = "pca") -> MachineModel:
    estimator.fit(_rows(3000, 0))  # type: ignore[attr-defined]
    return MachineModel.fitted(
        estimator,
        machine="conveyor",
        signals=SIGNALS,
        window=WindowSpec(window_s=20.0),
        detector=detector,
        threshold=2.5,
        alarm={"k": 3, "n": 5, "hold_off_s": 30.0},
        trained_from=1000.0,
        trained_to=4000.0,
    )


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_gives_identical_scores(tmp_path: Path, name: str) -> None:
    model = _model(make_detector(name), name)
    path = tmp_path / "conveyor.npz"
    save_model(path, model)
    loaded = load_model(path)
    fresh = _rows(500, 1)
    np.testing.assert_array_equal(
        loaded.estimator.score_samples(fresh), model.estimator.score_samples(fresh)
    )
    np.testing.assert_array_equal(
        loaded.estimator.contributions(fresh), model.estimator.contributions(fresh)
    )
    assert loaded.estimator.get_params() == model.estimator.get_params()
    for field in ("machine", "signals", "window", "detector", "threshold", "alarm", "versions"):
        assert getattr(loaded, field) == getattr(model, field)
    assert (loaded.trained_from, loaded.trained_to) == (1000.0, 4000.0)
    assert loaded.versions["scikit-learn"] and loaded.versions["numpy"]
    assert [p.name for p in tmp_path.iterdir()] == ["conveyor.npz"]  # no partial file left


def test_a_pipeline_with_a_scaler_round_trips(tmp_path: Path) -> None:
    pipe = _pipeline("pca")
    save_model(tmp_path / "m.npz", _model(pipe))
    loaded = load_model(tmp_path / "m.npz").estimator
    assert [name for name, _ in loaded.steps] == ["scale", "detect"]
    fresh = _rows(300, 2)
    np.testing.assert_array_equal(loaded.score_samples(fresh), pipe.score_samples(fresh))


@pytest.mark.parametrize("name", NAMES)
def test_the_file_holds_no_pickled_object(tmp_path: Path, name: str) -> None:
    """Every member loads with allow_pickle=False (numpy refuses an object array without
    unpickling it) and is a plain number or text array."""
    path = tmp_path / "m.npz"
    save_model(path, _model(make_detector(name), name))
    with np.load(path, allow_pickle=False) as archive:
        kinds = {member: archive[member].dtype.kind for member in archive.files}
    assert set(kinds.values()) <= set("biufU")
    assert {"metadata", "digest"} <= set(kinds)


def test_a_model_for_other_signals_names_them() -> None:
    model = _model(make_detector("baseline"), "baseline")
    check_signals(model, [*SIGNALS, "state"])  # extra signals alone are fine
    with pytest.raises(ModelError) as caught:
        check_signals(model, ["current_a", "speed_hz", "winding_temp_c"])
    message = str(caught.value)
    assert "missing motor_temp_c" in message and "winding_temp_c" in message
    assert "'conveyor'" in message


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(value: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, value, allow_pickle=True)
    return out.getvalue()


@pytest.mark.parametrize("tamper", ["metadata", "array", "pickle", "garbage", "empty", "no digest"])
def test_a_tampered_or_garbage_file_is_a_model_error(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "m.npz"
    save_model(path, _model(make_detector("pca")))
    members = _members(path)
    if tamper == "metadata":
        text = str(np.load(io.BytesIO(members["metadata.npy"])))
        members["metadata.npy"] = _npy(np.array(text.replace('"threshold": ', '"threshold": 1')))
        _rewrite(path, members)
    elif tamper == "array":
        mean = np.load(io.BytesIO(members["0/mean_.npy"]))
        members["0/mean_.npy"] = _npy(mean + 1e-9)
        _rewrite(path, members)
    elif tamper == "pickle":
        members["0/mean_.npy"] = _npy(np.array([{"evil": 1}], dtype=object))
        _rewrite(path, members)
    elif tamper == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip file" * 10)
    elif tamper == "empty":
        path.write_bytes(b"")
    else:
        del members["digest.npy"]
        _rewrite(path, members)
    with pytest.raises(ModelError, match=str(path)):
        load_model(path)


def test_a_forest_that_does_not_regrow_identically_is_refused(tmp_path: Path) -> None:
    """As if saved by another scikit-learn that grows other trees from the same seed."""
    model = _model(make_detector("forest"), "forest")
    model.estimator.forest_ = IsolationForest(n_estimators=200, random_state=99).fit(
        model.estimator.train_rows_
    )
    save_model(tmp_path / "m.npz", model)
    with pytest.raises(ModelError, match="does not reproduce its saved scores"):
        load_model(tmp_path / "m.npz")


def test_unsupported_estimators_are_not_saved(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot save a IsolationForest"):
        save_model(tmp_path / "m.npz", _model(IsolationForest(random_state=0)))
    assert not list(tmp_path.iterdir())


def test_feature_count_must_match_the_signals(tmp_path: Path) -> None:
    model = _model(make_detector("baseline"), "baseline")
    model.signals = ("current_a", "speed_hz")
    save_model(tmp_path / "m.npz", model)
    with pytest.raises(ModelError, match="takes 15 features but 2 signals give 10"):
        load_model(tmp_path / "m.npz")
    assert len(feature_names(SIGNALS)) == 15


def _pipeline(name: str) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("detect", make_detector(name))])


@pytest.mark.parametrize("pipeline", [False, True], ids=["detector", "pipeline"])
@pytest.mark.parametrize("name", NAMES)
def test_loaded_scorer_scores_as_the_estimator(tmp_path: Path, name: str, pipeline: bool) -> None:
    """What the online detector runs after loading (numpy alone, but for the forest) gives the
    scores and top features of the scikit-learn estimator it was saved from."""
    model = _model(_pipeline(name) if pipeline else make_detector(name), name)
    save_model(tmp_path / "m.npz", model)
    fresh = _rows(500, 1)
    scores, top = load_model(tmp_path / "m.npz").scorer.score_rows(fresh)
    estimator = model.estimator
    detector = estimator[-1] if pipeline else estimator
    transformed = estimator[:-1].transform(fresh) if pipeline else fresh
    np.testing.assert_allclose(scores, -estimator.score_samples(fresh), rtol=1e-12)
    np.testing.assert_array_equal(top, detector.contributions(transformed).argmax(axis=1))


def test_scoring_a_loaded_model_needs_no_scikit_learn(tmp_path: Path) -> None:
    """`up` and `detect` only score: a saved default model loads and scores without importing
    scikit-learn, scipy or pandas (about 130 MB of memory)."""
    save_model(tmp_path / "m.npz", _model(make_detector("baseline+pca"), "baseline+pca"))
    script = (
        "import sys, numpy as np\n"
        "from analytics.model_store import load_model\n"
        f"model = load_model({str(tmp_path / 'm.npz')!r})\n"
        "scores, top = model.scorer.score_rows(np.ones((3, model.n_features)))\n"
        "assert len(scores) == 3 and len(top) == 3\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
