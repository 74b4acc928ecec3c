"""Detectors: the scikit-learn estimator contract, calibrated limits, contributions, cost."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from analytics.detectors import (
    DETECTORS,
    BaselineDetector,
    CombinedDetector,
    ForestDetector,
    PCADetector,
    make_detector,
)
from analytics.features import Frame, WindowSpec, feature_signal, window_features

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")

# checks that skip themselves here for want of optional packages, not because of the detectors
ENVIRONMENT_SKIPS = {"check_array_api_input", "check_classifier_data_not_an_array"}
# sklearn expects some training rows flagged (-1) on its 300-row blobs; at the default 0.1%
# false-alarm rate (0.3 expected crossings in 300 rows) the calibrated threshold lies above every
# normal training row, by design.
DEFAULT_RATE_FAILURES = {
    "check_outliers_train": "0.1% of 300 training rows is 0.3: none is flagged, by design",
    "check_outliers_fit_predict": "0.1% of 300 training rows is 0.3: none is flagged, by design",
}


def _small(cls: type, **params: object) -> object:
    return cls(n_estimators=25, **params) if cls is ForestDetector else cls(**params)


def _check(estimator: object, expected: dict[str, str]) -> None:
    results = check_estimator(estimator, expected_failed_checks=expected, on_fail=None)
    by_status: dict[str, set[str]] = {}
    for result in results:
        by_status.setdefault(result["status"], set()).add(result["check_name"])
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    assert by_status.get("skipped", set()) <= ENVIRONMENT_SKIPS
    assert by_status.get("xfail", set()) == set(expected)
    assert len(by_status["passed"]) >= 40


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (PCADetector, DEFAULT_RATE_FAILURES),
        (ForestDetector, DEFAULT_RATE_FAILURES),
        (BaselineDetector, DEFAULT_RATE_FAILURES),
        (CombinedDetector, DEFAULT_RATE_FAILURES),
    ],
    ids=["pca", "forest", "baseline", "baseline+pca"],
)
def test_sklearn_estimator_checks_at_default_rate(cls: type, expected: dict[str, str]) -> None:
    _check(_small(cls), expected)


@pytest.mark.parametrize(
    "cls", [*DETECTORS.values(), CombinedDetector], ids=[*DETECTORS.keys(), "baseline+pca"]
)
def test_sklearn_estimator_checks_all_pass_at_a_rate_that_flags_training_rows(cls: type) -> None:
    _check(_small(cls, false_alarm_rate=0.05), {})


def _correlated(rows: int, seed: int, features: int = 8) -> np.ndarray:
    """Gaussian rows driven by three latent factors plus independent noise."""
    rng = np.random.default_rng(seed)
    loadings = np.random.default_rng(99).normal(size=(3, features))
    return rng.normal(size=(rows, 3)) @ loadings + 0.3 * rng.normal(size=(rows, features)) + 10.0


@pytest.mark.parametrize("name", DETECTORS)
def test_params_clone_and_pipeline(name: str) -> None:
    detector = make_detector(name, false_alarm_rate=0.01)
    assert detector.get_params()["false_alarm_rate"] == 0.01
    assert clone(detector.set_params(false_alarm_rate=0.02)).false_alarm_rate == 0.02
    X = _correlated(2000, 0)
    pipe = Pipeline([("scale", StandardScaler()), ("detect", detector)]).fit(X)
    assert pipe.set_params(detect__false_alarm_rate=0.02).get_params()["detect__false_alarm_rate"]
    shifted = X[:200] + 50.0
    assert (pipe.predict(shifted) == -1).all()
    assert np.mean(pipe.predict(X) == -1) == pytest.approx(0.02, abs=0.01)
    np.testing.assert_allclose(
        pipe.decision_function(X), pipe.score_samples(X) + pipe[-1].offset_ * -1
    )


def test_unknown_detector_names_the_known_ones() -> None:
    known = r"unknown detector .*use one of pca, forest, baseline"
    for name in ("svm", "baseline+svm", ""):
        with pytest.raises(ValueError, match=known):
            make_detector(name)


def test_a_combination_is_as_anomalous_as_its_furthest_part_and_names_its_feature() -> None:
    X = _correlated(3000, 0)
    combined = make_detector("baseline+pca", false_alarm_rate=0.001).fit(X)
    assert isinstance(combined, CombinedDetector)
    assert combined.get_params() == {"detectors": ("baseline", "pca"), "false_alarm_rate": 0.001}
    parts = [make_detector(n, false_alarm_rate=0.001).fit(X) for n in ("baseline", "pca")]
    fresh = _correlated(500, 1)
    fresh[:50, 5] += 40.0  # one feature far off: both parts flag it
    ratios = np.vstack([-p.score_samples(fresh) / -p.offset_ for p in parts])
    np.testing.assert_allclose(-combined.score_samples(fresh), ratios.max(axis=0))
    assert (combined.predict(fresh[:50]) == -1).all()
    assert (combined.contributions(fresh[:50]).argmax(axis=1) == 5).all()
    assert np.mean(combined.predict(fresh[50:]) == -1) < 0.02


@pytest.mark.parametrize(("rate", "tolerance"), [(0.01, 1.5), (0.001, 2.0)])
def test_pca_limits_hold_their_false_alarm_rate_on_fresh_gaussian_data(
    rate: float, tolerance: float
) -> None:
    """Observed rate on 400,000 fresh rows within a factor `tolerance` of the nominal rate,
    for T^2, SPE and the combined flag. Trained on 20,000 rows: 200 expected exceedances at 1%
    (sampling error ~7%), only 20 at 0.1% (~25%, hence the wider factor)."""
    pca = PCADetector(false_alarm_rate=rate).fit(_correlated(20_000, 1))
    fresh = _correlated(400_000, 2)
    t2, spe = pca.statistics(fresh)
    for observed in (t2 > pca.t2_limit_, spe > pca.spe_limit_, pca.predict(fresh) == -1):
        assert rate / tolerance < observed.mean() < rate * tolerance
    assert 1 <= len(pca.components_) < fresh.shape[1]


@pytest.mark.parametrize("name", ["baseline", "forest"])
def test_other_detectors_hold_their_false_alarm_rate(name: str) -> None:
    detector = make_detector(name, false_alarm_rate=0.01).fit(_correlated(20_000, 1))
    assert 0.01 / 1.5 < np.mean(detector.predict(_correlated(100_000, 2)) == -1) < 0.015


@pytest.mark.parametrize(
    ("name", "features", "sigmas"),
    [("pca", [2], 4.0), ("baseline", [2], 8.0), ("forest", list(range(8)), 4.0)],
)
def test_a_shifted_sample_is_flagged(name: str, features: list[int], sigmas: float) -> None:
    """PCA sees a 4-sigma shift of one feature (it breaks the correlations), the per-feature
    baseline needs it larger, the forest needs it in many features at once (its trees cannot
    isolate a row beyond the training range of a single feature)."""
    X = _correlated(5000, 3)
    detector = make_detector(name).fit(X)
    shifted = _correlated(500, 4)
    shifted[:, features] += sigmas * X[:, features].std(axis=0)
    assert np.mean(detector.predict(shifted) == -1) > 0.95


@pytest.mark.parametrize("feature", range(8))
def test_pca_t2_and_spe_contributions_point_at_the_faulty_feature(feature: int) -> None:
    """A 6-sigma offset of one feature. With 3 of 8 components kept it shows mainly in SPE
    (and in the combined contributions); T^2 is tested on a model that keeps all 8, where
    the fault lies in the modelled space. (In a 3-component model a one-feature fault's T^2
    share is ambiguous between features with similar loadings: any contribution method is.)"""
    X = _correlated(5000, 5)
    faulty = _correlated(200, 6)
    faulty[:, feature] += 6.0 * X[:, feature].std()
    pca = PCADetector().fit(X)
    full = PCADetector(n_components=8).fit(X)
    for contributions in (
        pca.spe_contributions(faulty),
        pca.contributions(faulty),
        full.t2_contributions(faulty),
        full.contributions(faulty),
    ):
        assert (contributions >= 0).all()
        assert np.mean(np.argmax(contributions, axis=1) == feature) > 0.95


@pytest.mark.parametrize("fault", ["offset", "stuck"])
@pytest.mark.parametrize("name", DETECTORS)
def test_contributions_name_the_faulty_signal(name: str, fault: str) -> None:
    """Four noisy signals following one slowly wandering load; the third is offset or frozen.
    The top contribution of the faulty rows maps back to that signal, and every detector flags
    them (the forest too: its statistic grows with the distance beyond its training range)."""
    rng = np.random.default_rng(7)
    n = 7000
    load = np.sin(np.arange(n) / 400.0) + 0.3 * np.sin(np.arange(n) / 57.0)
    signals = ("current_a", "motor_temp_c", "speed_hz", "vibration_mm_s")
    gains = (2.0, 1.0, -1.5, 0.5)
    values = np.column_stack([g * load + rng.normal(0, 0.2, n) for g in gains])
    spec = WindowSpec(window_s=30.0)
    train = Frame(np.arange(6000.0), signals, values[:6000])
    _, X, names = window_features(train, spec)
    detector = make_detector(name).fit(X)
    test_values = values[6000:].copy()
    if fault == "offset":
        test_values[500:, 2] += 5.0
    else:
        test_values[500:, 2] = test_values[500, 2]
    times, Y, _ = window_features(Frame(np.arange(6000.0, 7000.0), signals, test_values), spec)
    faulty = Y[times >= 6530]
    tops = [feature_signal(names[i]) for i in np.argmax(detector.contributions(faulty), axis=1)]
    assert np.mean(np.array(tops) == "speed_hz") > 0.9
    flagged = np.mean(detector.predict(faulty) == -1)
    assert flagged > 0.9


def test_a_feature_whose_extreme_is_common_is_left_out_of_the_baseline() -> None:
    """A rounded register's short spread is 0 in most normal windows: that extreme is normal,
    so it may neither flag nor hold normal rows at the threshold."""
    rng = np.random.default_rng(3)
    normal = rng.normal(size=(5000, 3))
    normal[:, 2] = np.where(rng.random(5000) < 0.3, -20.0, rng.normal(-3.0, 0.3, 5000))
    detector = BaselineDetector(false_alarm_rate=1e-5).fit(normal)
    assert detector.weights_.tolist() == [1.0, 1.0, 0.0]
    fresh = rng.normal(size=(2000, 3))
    fresh[:, 2] = -20.0
    ratios = -detector.score_samples(fresh) / -detector.offset_
    assert ratios.max() < 0.9
    shifted = fresh[:1].copy()
    shifted[0, 0] = 12.0
    assert detector.predict(shifted).tolist() == [-1]
