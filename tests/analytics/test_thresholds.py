"""Threshold calibration on distributions whose quantiles are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats

from analytics.thresholds import calibrate


def test_many_exceedances_give_the_empirical_quantile() -> None:
    scores = stats.expon.rvs(size=200_000, random_state=1)
    assert calibrate(scores, 0.01) == pytest.approx(np.log(100.0), rel=0.03)


@pytest.mark.parametrize(
    ("distribution", "size", "rate"),
    [(stats.expon(), 3000, 1e-4), (stats.norm(), 5000, 1e-3), (stats.chi2(8), 2000, 1e-3)],
)
def test_few_exceedances_use_the_tail_model(distribution, size: int, rate: float) -> None:
    """Fewer than 10 expected normal points above the threshold: the Gumbel fit to block maxima
    must still hit the rate; tolerance: the median over 30 draws within a factor 2.5 of the rate,
    where the raw empirical quantile would be off by far more on 0.3 to 5 expected points."""
    rng = np.random.default_rng(2)
    achieved = [
        distribution.sf(calibrate(distribution.rvs(size=size, random_state=rng), rate))
        for _ in range(30)
    ]
    assert rate / 2.5 < np.median(achieved) < rate * 2.5


def _ar1(rows: int, rng: np.random.Generator, rho: float = 0.95) -> np.ndarray:
    """A Gaussian AR(1) series with unit variance: overlapping windows' scores are like it."""
    noise = rng.standard_normal(rows) * np.sqrt(1 - rho * rho)
    noise[0] = rng.standard_normal()
    return signal.lfilter([1.0], [1.0, -rho], noise)


def test_correlated_scores_cross_the_threshold_at_the_rate_in_episodes_per_row() -> None:
    """Far beyond the training data: 1e-5 crossings per row, calibrated on 20,000 strongly
    correlated rows (0.2 expected crossings), measured as up-crossings on 5 x 2 million fresh
    rows (100 expected). Never more than promised (a factor 2.5 of slack); a Gaussian tail is
    lighter than the Gumbel's, so the estimate errs on the quiet side, by up to a factor 20."""
    rng = np.random.default_rng(5)
    rate, draws, rows = 1e-5, 5, 2_000_000
    crossings = 0
    for _ in range(draws):
        above = _ar1(rows, rng) > calibrate(_ar1(20_000, rng), rate)
        crossings += np.count_nonzero(above[1:] & ~above[:-1])
    assert rate / 20 < crossings / (draws * rows) < rate * 2.5


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
