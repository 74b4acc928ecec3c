"""The arithmetic of each detector's statistic, in numpy alone, and scorers built from a saved
model without scikit-learn.

Scoring a fitted baseline, PCA or combined detector is a few matrix products; importing
scikit-learn to do it costs about 130 MB (it pulls in scipy and pandas), more than everything
else `shopfloor up` holds. So the statistics live here as plain classes over the fitted arrays:
analytics.detectors' scikit-learn estimators inherit them (one source for the arithmetic) and
add fitting, and `frozen_scorer` builds the same classes straight from a model file's arrays.
Only the forest needs scikit-learn to score (its trees are re-grown): it has no frozen scorer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

TINY = 1e-12  # floor for limits and scales in standardized units: avoids 0/0, never binds


class Statistic(Protocol):
    """A fitted detector's anomaly statistic (higher = more anomalous) and its per-feature
    contributions, on rows already validated and transformed."""

    offset_: float

    def _statistic(self, X: np.ndarray) -> np.ndarray: ...

    def _contributions(self, X: np.ndarray) -> np.ndarray: ...


class RobustZStatistic:
    """Per-feature robust |z| in units of each feature's own limit (center_, scale_, limits_,
    weights_: a saturated feature weighs 0)."""

    center_: np.ndarray
    scale_: np.ndarray
    limits_: np.ndarray
    weights_: np.ndarray

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        return np.abs(X - self.center_) / (self.scale_ * self.limits_) * self.weights_


class BaselineStatistic(RobustZStatistic):
    """The largest per-feature robust |z| of a row, each in units of its own limit."""

    def _statistic(self, X: np.ndarray) -> np.ndarray:
        return self._contributions(X).max(axis=1)


class PCAStatistic:
    """Hotelling's T^2 and SPE, each over its own limit; the row's statistic is the larger."""

    mean_: np.ndarray
    scale_: np.ndarray
    t2_metric_: np.ndarray
    residual_projector_: np.ndarray
    t2_limit_: float
    spe_limit_: float

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def _t2_spe(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t2 = np.einsum("ij,ij->i", Z @ self.t2_metric_, Z)
        residual = Z @ self.residual_projector_
        return t2, np.einsum("ij,ij->i", residual, residual)

    def _ratios(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t2, spe = self._t2_spe(Z)
        return t2 / self.t2_limit_, spe / self.spe_limit_

    def _statistic(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(*self._ratios(self._scaled(X)))

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        """The contributions of whichever statistic is further over its limit in each row,
        in units of that limit."""
        Z = self._scaled(X)
        t2_ratio, spe_ratio = self._ratios(Z)
        t2 = reconstruction_contributions(Z, self.t2_metric_) / self.t2_limit_
        spe = reconstruction_contributions(Z, self.residual_projector_) / self.spe_limit_
        return np.where((t2_ratio >= spe_ratio)[:, None], t2, spe)


def reconstruction_contributions(Z: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """Reconstruction-based contribution of each feature to the quadratic form z' M z (Alcala
    and Qin, 2009): the amount by which reconstructing that feature alone would lower it."""
    return (Z @ metric) ** 2 / np.maximum(np.diag(metric), TINY)


class CombinedStatistic:
    """Several detectors as one: each part's statistic over its own threshold, the largest
    wins and its contributions name the signal."""

    detectors_: Sequence[Statistic]

    def _ratios(self, X: np.ndarray) -> np.ndarray:
        """(parts, rows): each part's statistic in units of its threshold."""
        return np.vstack([part._statistic(X) / threshold(part) for part in self.detectors_])

    def _statistic(self, X: np.ndarray) -> np.ndarray:
        return self._ratios(X).max(axis=0)

    def _contributions(self, X: np.ndarray) -> np.ndarray:
        winner = self._ratios(X).argmax(axis=0)
        out = np.empty_like(X)
        for i, part in enumerate(self.detectors_):
            rows = winner == i
            if rows.any():
                out[rows] = part._contributions(X[rows]) / threshold(part)
        return out


def threshold(detector: Statistic) -> float:
    """The statistic's threshold: minus sklearn's offset_, floored above 0."""
    return max(-float(detector.offset_), TINY)


def part_states(state: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A combination's saved state split into its own and each part's (saved as "0.center_")."""
    own = {k: v for k, v in state.items() if "." not in k}
    parts: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if "." in key:
            index, name = key.split(".", 1)
            parts.setdefault(int(index), {})[name] = value
    return own, [parts[i] for i in sorted(parts)]


class Scorer(Protocol):
    """What the online detector needs of a model: scores and the top feature of each row."""

    def score_rows(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class FrozenScorer:
    """A saved model's standardisation and statistic, numpy only."""

    center: np.ndarray  # the scaler's mean (zeros without one)
    scale: np.ndarray  # the scaler's scale (ones without one)
    statistic: Statistic

    def score_rows(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(anomaly scores, index of the top-contributing feature) per row."""
        X = (np.asarray(features, dtype=np.float64) - self.center) / self.scale
        return self.statistic._statistic(X), np.argmax(self.statistic._contributions(X), axis=1)


_STATISTICS: dict[str, Callable[[], Any]] = {
    "baseline": BaselineStatistic,
    "pca": PCAStatistic,
    "BaselineDetector": BaselineStatistic,
    "PCADetector": PCAStatistic,
}


def frozen_scorer(steps: Sequence[Mapping[str, Any]]) -> FrozenScorer | None:
    """The scorer of a model file's steps ({"class", "params", "state"}: an optional
    StandardScaler, then a detector), or None if it needs scikit-learn (a forest)."""
    *transforms, last = steps
    statistic = _statistic(last["class"], last["params"], last["state"])
    if statistic is None or len(transforms) > 1:
        return None
    width = int(steps[0]["state"]["n_features_in_"])
    center, scale = np.zeros(width), np.ones(width)
    if transforms:
        scaler = transforms[0]
        if scaler["class"] != "StandardScaler":
            return None
        params, state = scaler["params"], scaler["state"]
        if params.get("with_mean", True):
            center = np.asarray(state["mean_"], dtype=np.float64)
        if params.get("with_std", True):
            scale = np.asarray(state["scale_"], dtype=np.float64)
    return FrozenScorer(center=center, scale=scale, statistic=statistic)


def _statistic(name: str, params: Mapping[str, Any], state: Mapping[str, Any]) -> Any:
    if name == "CombinedDetector":
        own, parts = part_states(state)
        names = list(params["detectors"])
        built = [_statistic(n, {}, s) for n, s in zip(names, parts, strict=True)]
        if any(part is None for part in built):
            return None
        combined = _with_state(CombinedStatistic(), own)
        combined.detectors_ = built
        return combined
    make = _STATISTICS.get(name)
    return None if make is None else _with_state(make(), state)


def _with_state(statistic: Any, state: Mapping[str, Any]) -> Any:
    for attr, value in state.items():
        setattr(statistic, attr, value)
    return statistic
