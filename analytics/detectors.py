"""Anomaly detectors for windowed features, as scikit-learn outlier detectors.

All follow sklearn's outlier convention: `score_samples` is higher for more normal rows,
`decision_function = score_samples - offset_` is negative for anomalies and `predict` gives
+1 / -1. Each detector reduces a row to one anomaly statistic (higher = more anomalous) and
`offset_` is minus that statistic's threshold at `false_alarm_rate` (analytics.thresholds),
calibrated OUT OF SAMPLE: the model is fitted on the leading rows and the threshold set on the
scores of the last CALIBRATION_SHARE of them, which it never saw. In-sample scores are too
good (a PCA fitted on few rows explains their noise too), so a threshold set on them flags far
more new normal rows than asked. `contributions` says per feature how much it drives the
statistic, so that a flag can name the signal behind it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted, validate_data

from analytics.scoring import (
    TINY,
    BaselineStatistic,
    CombinedStatistic,
    PCAStatistic,
    RobustZStatistic,
    part_states,
    reconstruction_contributions,
)
from analytics.thresholds import calibrate

MAD_TO_SD = 1.4826  # a normal distribution's standard deviation per median absolute deviation
CALIBRATION_SHARE = 0.25  # the last rows of the training data, held out to set the threshold
MIN_FIT_ROWS = 4  # three to fit, one to calibrate


class _Detector(OutlierMixin, BaseEstimator):
    """The sklearn outlier API on top of `_fit` and `_statistic`, both on validated arrays."""

    false_alarm_rate: float

    def fit(self, X: Any, y: None = None) -> _Detector:
        """Learn normal behaviour from rows assumed normal (in time order): the model from the
        leading rows, the threshold from the held-out rest (calibration_split)."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=MIN_FIT_ROWS)
        model_rows, calibration_rows = calibration_split(X)
        self._fit(model_rows)
        self.offset_ = -calibrate(self._statistic(calibration_rows), self.false_alarm_rate)
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus the anomaly statistic: higher is more normal."""
        return -self._statistic(self._validated(X))

    def decision_function(self, X: Any) -> np.ndarray:
        """Negative for rows beyond the threshold."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for normal rows, -1 for anomalies."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def contributions(self, X: Any) -> np.ndarray:
        """(rows, features), non-negative: how much each feature drives the statistic."""
        return self._contributions(self._validated(X))

    def fitted_state(self) -> dict[str, Any]:
        """The learned attributes that fully define the fitted detector (for model_store)."""
        check_is_fitted(self)
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def restore_fitted_state(self, state: dict[str, Any]) -> None:
        """Inverse of `fitted_state`, on an unfitted detector with the same parameters."""
        for name, value in state.items():
            setattr(self, name, value)

    def _validated(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        if (  # the online scorer's path: one ready row, skip sklearn's conversions
            type(X) is np.ndarray
            and X.dtype == np.float64
            and X.ndim == 2
            and X.shape[1] == self.n_features_in_
            and X.shape[0] > 0
            and np.isfinite(X).all()
        ):
            return X
        return validate_data(self, X, dtype=np.float64, reset=False)

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _statistic(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def calibration_split(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit on, later rows to calibrate on): the last CALIBRATION_SHARE, at least one."""
    held = min(max(round(len(X) * CALIBRATION_SHARE), 1), len(X) - 1)
    return X[: len(X) - held], X[len(X) - held :]


SATURATED_SHARE = 0.01  # share of normal rows at a feature's extreme that makes it uninformative


class _RobustZ(RobustZStatistic, _Detector):
    """Per-feature robust |z| against the training median and MAD, each divided by its own
    limit at the false-alarm rate (center_, scale_, limits_): the baseline's statistic and
    the forest's contributions.

    Dividing by each feature's own limit matters: a heavy-tailed feature (the level of a
    wandering process) would otherwise set one threshold for all and mask a frozen sensor's
    spread in another."""

    def _fit_robust(self, X: np.ndarray) -> None:
        self.center_ = np.median(X, axis=0)
        mad = MAD_TO_SD * np.median(np.abs(X - self.center_), axis=0)
        # a feature constant most of the time has MAD 0: fall back to its standard deviation,
        # and to 1 (sklearn's choice for zero variance) if it never moved at all
        sd = X.std(axis=0)
        self.scale_ = np.where(mad > TINY, mad, np.where(sd > TINY, sd, 1.0))
        z = np.abs(X - self.center_) / self.scale_
        self.limits_ = np.array(
            [max(calibrate(column, self.false_alarm_rate), TINY) for column in z.T]
        )
        # A feature whose most extreme normal value is also a common one (the 2 s spread of a
        # register that rounds to 0.1 °C is 0 in most windows) can flag nothing beyond it, yet
        # would hold every such row exactly at the threshold: it is left out.
        top = z.max(axis=0)
        at_top = (z >= top * (1.0 - 1e-9)).mean(axis=0)
        self.weights_ = np.where(at_top >= SATURATED_SHARE, 0.0, 1.0)


class BaselineDetector(BaselineStatistic, _RobustZ):
    """Per-feature robust baseline: the statistic is the largest |robust z| of a row, each
    feature's in units of its own limit.

    Each signal is judged on its own, so a frozen reading (spread far below normal) or a
    drifting one (slope, then level) is flagged even when it stays consistent with the rest.
    """

    def __init__(self, false_alarm_rate: float = 0.001) -> None:
        self.false_alarm_rate = false_alarm_rate

    def _fit(self, X: np.ndarray) -> None:
        self._fit_robust(X)


class ForestDetector(_RobustZ):
    """IsolationForest on the feature rows: catches unusual combinations without assuming a
    distribution. A tree never splits beyond the training range, so on its own a row far out in
    ONE feature scores like the most extreme training row there, and the score (at most 1.0)
    cannot pass a threshold extrapolated beyond every training score: the statistic adds how
    far beyond the training range the row lies (robust |z| past the largest training |z|, the
    furthest feature), unbounded, so the forest fires on what it has never seen. Contributions
    are the baseline's per-feature robust |z| (a forest has no exact decomposition). The
    training rows are kept (train_rows_) so a saved model can re-grow the identical forest from
    them and seed_ instead of pickling."""

    def __init__(
        self,
        n_estimators: int = 100,  # Liu et al.'s and scikit-learn's default
        false_alarm_rate: float = 0.001,
        random_state: int | None = 0,
        max_samples: int | float | str = "auto",
    ) -> None:
        self.n_estimators = n_estimators
        self.false_alarm_rate = false_alarm_rate
        self.random_state = random_state
        self.max_samples = max_samples

    def fitted_state(self) -> dict[str, Any]:
        state = super().fitted_state()
        del state["forest_"]
        return state

    def restore_fitted_state(self, state: dict[str, Any]) -> None:
        super().restore_fitted_state(state)
        self._grow()

    def _fit(self, X: np.ndarray) -> None:
        self._fit_robust(X)
        self.reach_ = np.abs(X - self.center_).max(axis=0) / self.scale_
        self.train_rows_ = X.copy()
        seed = self.random_state
        self.seed_ = int(np.random.default_rng(seed).integers(2**31)) if seed is None else seed
        self._grow()

    def _grow(self) -> None:
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            random_state=self.seed_,
        ).fit(self.train_rows_)

    def _statistic(self, X: np.ndarray) -> np.ndarray:
        beyond = np.abs(X - self.center_) / self.scale_ - self.reach_
        return -self.forest_.score_samples(X) + np.maximum(beyond, 0.0).max(axis=1)


class PCADetector(PCAStatistic, _Detector):
    """Multivariate statistical process control: PCA on standardized features with Hotelling's
    T^2 (unusual along the normal correlations) and SPE/Q (off them: a broken correlation).

    Each statistic is divided by its own limit at `false_alarm_rate` and the row's statistic is
    the larger ratio. Contributions are reconstruction-based (Alcala and Qin, 2009): unlike
    plain variable contributions they point at the faulty variable for a single-variable
    fault, and they are non-negative.
    """

    def __init__(
        self,
        n_components: int | float = 0.95,
        false_alarm_rate: float = 0.001,
        standardize: bool = True,
    ) -> None:
        self.n_components = n_components
        self.false_alarm_rate = false_alarm_rate
        self.standardize = standardize

    def statistics(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(T^2, SPE) per row, in standardized units."""
        return self._t2_spe(self._scaled(self._validated(X)))

    def t2_contributions(self, X: Any) -> np.ndarray:
        """Reconstruction-based contributions to T^2 per feature."""
        return reconstruction_contributions(self._scaled(self._validated(X)), self.t2_metric_)

    def spe_contributions(self, X: Any) -> np.ndarray:
        """Reconstruction-based contributions to SPE per feature."""
        Z = self._scaled(self._validated(X))
        return reconstruction_contributions(Z, self.residual_projector_)

    def _fit(self, X: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0, ddof=1)
        self.scale_ = np.where(sd > TINY, sd, 1.0) if self.standardize else np.ones(X.shape[1])
        Z = self._scaled(X)
        _, singular, vt = np.linalg.svd(Z, full_matrices=False)
        variances = singular**2 / (len(Z) - 1)
        kept = self._kept(variances)
        self.components_ = vt[:kept]
        self.explained_variance_ = variances[:kept]
        self.t2_metric_ = (self.components_.T / self.explained_variance_) @ self.components_
        self.residual_projector_ = np.eye(X.shape[1]) - self.components_.T @ self.components_
        t2, spe = self._t2_spe(Z)
        self.t2_limit_ = max(calibrate(t2, self.false_alarm_rate), TINY)
        self.spe_limit_ = max(calibrate(spe, self.false_alarm_rate), TINY)

    def _kept(self, variances: np.ndarray) -> int:
        """How many components: a count, or the fewest explaining that share of variance."""
        usable = int(np.sum(variances > TINY * max(float(variances[0]), 1.0)))
        wanted = self.n_components
        if isinstance(wanted, (int, np.integer)) and not isinstance(wanted, bool):
            if not 1 <= wanted <= len(variances):
                raise ValueError(
                    f"n_components={wanted} must be between 1 and {len(variances)} "
                    "(the number of features, or of training rows - 1)"
                )
            return min(int(wanted), usable)
        if not (isinstance(wanted, (float, np.floating)) and 0.0 < wanted <= 1.0):
            raise ValueError(
                f"n_components must be a count >= 1 or a variance share in (0, 1], got {wanted!r}"
            )
        if usable == 0:
            return 0
        shares = np.cumsum(variances[:usable]) / variances[:usable].sum()
        return min(int(np.searchsorted(shares, wanted - 1e-12)) + 1, usable)


DETECTORS: dict[str, type[_Detector]] = {
    "pca": PCADetector,
    "forest": ForestDetector,
    "baseline": BaselineDetector,
}
DEFAULT_DETECTOR = "baseline+pca"


class CombinedDetector(CombinedStatistic, _Detector):
    """Several detectors as one: a row is as anomalous as the detector furthest over its own
    threshold says, and that detector's contributions name the signal.

    The baseline judges each signal on its own (stuck and drifting sensors, a step in one
    signal); PCA judges the signals together (a broken correlation that no single signal
    shows). Each statistic is divided by its detector's threshold, so 1.0 is every detector's
    threshold, and the combined offset_ is calibrated on the maximum of these ratios.
    """

    def __init__(
        self, detectors: tuple[str, ...] = ("baseline", "pca"), false_alarm_rate: float = 0.001
    ) -> None:
        self.detectors = detectors
        self.false_alarm_rate = false_alarm_rate

    def fitted_state(self) -> dict[str, Any]:
        """The parts' states, each attribute prefixed with its part's position ("0.center_")."""
        state = super().fitted_state()
        parts = state.pop("detectors_")
        for i, part in enumerate(parts):
            state.update({f"{i}.{k}": v for k, v in part.fitted_state().items()})
        return state

    def restore_fitted_state(self, state: dict[str, Any]) -> None:
        own, states = part_states(state)
        parts = self._parts()
        for part, part_state in zip(parts, states, strict=True):
            part.restore_fitted_state(part_state)
        super().restore_fitted_state(own)
        self.detectors_ = parts

    def _parts(self) -> list[_Detector]:
        names = list(self.detectors)
        if not names or "+" in "".join(names):
            raise ValueError(f"detectors must be names from {', '.join(DETECTORS)}, got {names}")
        return [make_detector(name, false_alarm_rate=self.false_alarm_rate) for name in names]

    def fit(self, X: Any, y: None = None) -> CombinedDetector:
        """Every part fitted and calibrated on the same split, then the combination's threshold
        on the same held-out rows."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=MIN_FIT_ROWS)
        self.detectors_ = [part.fit(X) for part in self._parts()]
        self.offset_ = -calibrate(self._statistic(calibration_split(X)[1]), self.false_alarm_rate)
        return self


def make_detector(name: str, **params: Any) -> _Detector:
    """A detector by its name in DETECTORS, or several joined by '+' (a CombinedDetector)."""
    names = name.split("+")
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not name:
        raise ValueError(
            f"unknown detector {name!r}; use one of {', '.join(DETECTORS)} or several joined "
            f"by '+' (e.g. {DEFAULT_DETECTOR})"
        )
    if len(names) > 1:
        return CombinedDetector(detectors=tuple(names), **params)
    return DETECTORS[name](**params)
