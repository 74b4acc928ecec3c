"""Anomaly-score thresholds from normal data at a chosen false-alarm rate.

A detector that cries wolf gets switched off, so the rate that matters is false-alarm
*episodes* per day, and the threshold sits far out in the tail: one normal crossing in days,
where the training data hold hours. Two facts shape the estimate:

- With many normal scores per expected crossing the empirical quantile is the honest answer.
- Past that it must be extrapolated. Scores of neighbouring rows are strongly correlated (their
  windows overlap), so one excursion above a level is one episode however many rows it lasts.
  Extreme-value statistics handle both at once: the maximum of each block of rows (of normal
  scores in time order) follows a Gumbel distribution for every score with an exponential-type
  tail (Gaussian levels, log spreads, chi-square T^2 and SPE, maxima of these), and the chance
  that a block's maximum passes the threshold is the chance of an episode starting in it. So
  `false_alarm_rate` reads as expected crossings (episodes) per row, and the threshold is the
  block-maximum quantile at `false_alarm_rate * block_rows`.
"""

from __future__ import annotations

import math

import numpy as np

MIN_EXCEEDANCES = 10  # expected normal points above the threshold for the empirical quantile
BLOCKS = 50  # block maxima the Gumbel distribution is fitted to, when the rows allow
MIN_BLOCK_ROWS = 30  # rows per block: longer than a window's correlation (30 s windows)...
MIN_BLOCKS = 10  # ...unless that leaves fewer blocks; fewer scores: the largest it is
EULER_GAMMA = 0.5772156649015329
TIE_MARGIN = 1e-9  # relative: far above float noise, far below any meaningful score change


def calibrate(normal_scores: np.ndarray, false_alarm_rate: float) -> float:
    """The anomaly score that normal data crosses at `false_alarm_rate` per row.

    Scores are anomaly scores (higher = more anomalous), in time order for the extreme-value
    estimate. Raises ValueError for a rate outside (0, 1), for no scores, or for non-finite
    scores.
    """
    if not 0.0 < false_alarm_rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    scores = np.asarray(normal_scores, dtype=float).ravel()
    if scores.size == 0:
        raise ValueError("no normal scores to calibrate a threshold on")
    if not np.isfinite(scores).all():
        raise ValueError("normal scores must be finite to calibrate a threshold")
    if scores.size * false_alarm_rate >= MIN_EXCEEDANCES:
        return float(np.quantile(scores, 1.0 - false_alarm_rate))
    blocks = min(BLOCKS, max(scores.size // MIN_BLOCK_ROWS, MIN_BLOCKS))
    if scores.size < blocks:
        return _above(float(scores.max()))
    threshold = _gumbel_quantile(scores, blocks, false_alarm_rate)
    if scores.size * false_alarm_rate < 1.0:  # rarer than once in the data: never below its top
        threshold = max(threshold, _above(float(scores.max())))
    return threshold


def _above(score: float) -> float:
    """Just above a score: the row a threshold was taken from must not sit on it, where the
    floating-point noise of another batch size would flip its verdict."""
    return score + TIE_MARGIN * max(abs(score), 1.0)


def _gumbel_quantile(scores: np.ndarray, blocks: int, false_alarm_rate: float) -> float:
    """The level a block's maximum passes with probability rate * block rows, from a Gumbel
    distribution fitted to the block maxima by the method of moments."""
    rows = scores.size // blocks
    maxima = scores[: rows * blocks].reshape(blocks, rows).max(axis=1)
    scale = float(maxima.std(ddof=1)) * math.sqrt(6.0) / math.pi
    location = float(maxima.mean()) - EULER_GAMMA * scale
    chance = min(false_alarm_rate * rows, 0.5)
    return location - scale * math.log(-math.log1p(-chance))
