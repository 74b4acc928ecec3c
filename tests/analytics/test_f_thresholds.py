"""Threshold calibration on distributions whose quantiles are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analytics.thresholds import calibrate


def test_many_exceedances_give_the_empirical_quantile() -> None:
    scores = stats.expon.rvs(size=200_000, random_state=1)
    assert calibrate(scores, 0.01) == pytest.approx(np.log(100.0), rel=0.03)


@pytest.mark.parametrize(
    ("distribution", "size", "rate"),
    [(stats.expon(), 3000, 1e-4), (stats.norm(), 5000, 1e-3), (stats.chi2(8), 2000, 1e-3)],
)
def test_few_exceedances_use_the_tail_model(distribution, size: int, rate: float) -> None:
    """Fewer than 20 expected normal points above the threshold: the Pareto tail fit must
    still hit the rate; tolerance: the median over 30 draws within a factor 2.5 of the rate,
    where the raw empirical quantile would be off by far more on 0.3 to 2 expected points."""
    rng = np.random.default_rng(2)
    achieved = [
        distribution.sf(calibrate(distribution.rvs(size=size, random_state=rng), rate))
        for _ in range(30)
    ]
    assert rate / 2.5 < np.median(achieved) < rate * 2.5


def test_lower_rates_give_higher_thresholds() -> None:
    scores = stats.norm.rvs(size=10_000, random_state=3)
    limits = [calibrate(scores, rate) for rate in (0.1, 0.01, 0.001, 0.0001)]
    assert limits == sorted(limits)


@pytest.mark.parametrize(
    ("scores", "rate", "message"),
    [
        (np.ones(10), 0.0, "false_alarm_rate"),
        (np.ones(10), 1.0, "false_alarm_rate"),
        (np.array([]), 0.01, "no normal scores"),
        (np.array([1.0, np.nan]), 0.01, "finite"),
    ],
)
def test_bad_input_is_refused(scores: np.ndarray, rate: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate(scores, rate)
