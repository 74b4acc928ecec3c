"""Anomaly-score thresholds from normal data at a chosen false-alarm rate.

With many normal scores per expected false alarm the empirical quantile is the honest answer.
With few (0.1% of a few thousand rows is a handful of points) the empirical quantile is noise,
so the tail above the 90th percentile is modelled as a generalized Pareto distribution (peaks
over threshold, the standard of extreme-value statistics) and the quantile read from the fit.
"""

from __future__ import annotations

import numpy as np

MIN_EXCEEDANCES = 20  # expected normal points above the threshold for the empirical quantile
TAIL_SHARE = 0.1  # the share of the highest scores the tail model is fitted on
MIN_TAIL = 20  # fewer tail points than this: no tail model, the empirical quantile it is


def calibrate(normal_scores: np.ndarray, false_alarm_rate: float) -> float:
    """The anomaly score that normal data exceeds with probability `false_alarm_rate`.

    Scores are anomaly scores (higher = more anomalous). Raises ValueError for a rate outside
    (0, 1), for no scores, or for non-finite scores.
    """
    if not 0.0 < false_alarm_rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    scores = np.asarray(normal_scores, dtype=float).ravel()
    if scores.size == 0:
        raise ValueError("no normal scores to calibrate a threshold on")
    if not np.isfinite(scores).all():
        raise ValueError("normal scores must be finite to calibrate a threshold")
    empirical = float(np.quantile(scores, 1.0 - false_alarm_rate))
    if scores.size * false_alarm_rate >= MIN_EXCEEDANCES or false_alarm_rate >= TAIL_SHARE:
        return empirical
    tail = _pareto_quantile(scores, false_alarm_rate)
    return empirical if tail is None else tail


def _pareto_quantile(scores: np.ndarray, false_alarm_rate: float) -> float | None:
    """Quantile from a generalized Pareto fit (method of moments) to the excesses over the
    90th percentile; None when the tail is too small or degenerate to fit."""
    base = float(np.quantile(scores, 1.0 - TAIL_SHARE))
    excess = scores[scores > base] - base
    if excess.size < MIN_TAIL:
        return None
    mean, var = float(excess.mean()), float(excess.var(ddof=1))
    if not var > 0:
        return None
    ratio = mean * mean / var
    shape = 0.5 * (1.0 - ratio)
    scale = 0.5 * mean * (ratio + 1.0)
    odds = (excess.size / scores.size) / false_alarm_rate
    if abs(shape) < 1e-9:
        return base + scale * float(np.log(odds))
    return base + scale / shape * float(odds**shape - 1.0)
