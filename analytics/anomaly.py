"""Anomaly detection on a pandas DataFrame: the public API for a plant's own data.

    from analytics.anomaly import AnomalyDetector
    detector = AnomalyDetector().fit(normal)          # DataFrame: time index, one column a signal
    verdicts = detector.predict(new, history=normal)  # 1 anomaly, 0 normal, one per row of `new`
    signals = detector.top_signals(new, history=normal)  # the signal behind each flag ("" if none)

Rows are a time series on a regular grid (one row a sample); every length is in rows. What it
does, and why (docs/anomaly-detection.md has the measurements):

- Features: each signal's mean over the last `window` rows (a short window: a few hundred
  training rows cannot train many features per signal, and a fault longer than the window is
  seen whole). `history` (the rows before `X`, e.g. the training rows) fills the first windows,
  as an online detector would have them.
- Model: the detectors of analytics.detectors (`baseline+pca` by default: each signal on its own,
  and the signals together), fitted on the leading rows of the training data.
- Calibration, split-conformal: the last quarter of the training rows is held out; the
  threshold is their conformal (1 - false_alarm_rate / DRIFT_MARGIN) quantile. On exchangeable
  rows the rate itself would do; real processes drift past what the training showed, and the
  margin keeps the share of new normal rows above it near `false_alarm_rate`. Scores are in
  units of that threshold: above 1.0 is above the threshold.
- Drift: each signal's baseline follows the rows judged normal (an exponentially weighted mean
  of the offsets, time constant `drift_rows`, by default as many rows as trained), rows above
  the threshold left out, so that slow drift of normal running does not become a flood of
  alarms, and a fault is not learned as normal.
- Operating modes: a process does not stay in one operating point for ever. An episode open for
  `relearn_rows` (by default as many rows as trained) teaches a new mode from its last rows if
  they are steady (their short-term variation at most STEADY_SPREAD times the mode's: a process
  still swinging is a fault, not a new operating point; with `learn_modes="consistent"` only if
  they also keep the training correlations); rows an
  operator labels a false alarm become one too (`learn_normal`). Each row is scored in the known
  mode that explains it best, so one change of mode costs one episode, not an alarm that never
  closes.
- Practical significance: a row whose every signal is within `floor_share` of its level or
  range (or two steps of its resolution) of its training range and of what the other signals
  predict for it is never above the threshold, however unusual the combination: a signal
  constant in training that later moves by its last digit, or a correlation broken by
  noise-sized deviations, is not a fault a plant acts on.
- Verdicts: `k` of the last `n` rows above the threshold open an episode; it stays open across
  gaps of fewer than `bridge` rows below it (a fault's score dips under the threshold now and
  then). Every row of an episode, from the one that opened it to its last above the threshold,
  is an anomaly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from analytics.detectors import (
    DEFAULT_DETECTOR,
    BaselineDetector,
    calibration_split,
    make_detector,
)

MIN_TRAINING_ROWS = 20  # fewer cannot hold a fit part and a calibration part of any use
CHUNK_ROWS = 64  # rows scored together while following drift: one model call each
RESOLUTION_STEPS = 2.0  # a deviation of two quantization steps or less is the register's noise
EXPECTED_VARIANCE = 0.95  # of the training rows, explained by what the signals share
LEARN_MODES = ("any", "consistent")  # which long episodes teach a new operating mode
# a mode explains a chunk of rows when no more of them are above its threshold than this: a
# mode fitted on a few hundred rows has a few normal rows above it in every chunk
SWITCH_SHARE = 0.1
MAX_MODES = 8  # modes learned from long episodes kept while scoring a run: the latest
BELOW_LIMIT = 0.99  # the score of a row without a practically significant deviation, at most
# interquartile ranges above the upper quartile beyond which a training row is taken for a
# fault: wide for the rows the model learns from (the largest robust z of 50 signals has a long
# tail), tighter for the calibration rows, where a few fault rows lift the threshold
FIT_FENCE = 6.0
CALIBRATION_FENCE = 3.0
PART_RATE = 0.01  # the rate each part of a combined detector is scaled by (weighs the parts)
# the threshold is the held-out quantile at false_alarm_rate / DRIFT_MARGIN: on real records
# new normal rows drift past the training's tail, and 2 to 5 times the rate asked was above
# a threshold set at it (chosen leave-one-dataset-out from 1, 2, 4: docs/anomaly-detection.md)
DRIFT_MARGIN = 4.0
# a new operating point is a steady state: its signals (the median one) vary at most this many
# times as much as in training; an episode that varies more is a process still moving, a fault
STEADY_SPREAD = 2.0


class AnomalyDetector(BaseEstimator):
    """Fit on normal rows, then score, predict and name the top signal of new rows (see the
    module docstring). `score_samples` follows scikit-learn: higher is more normal (minus the
    anomaly score, in units of the threshold); `predict` does NOT: 1 is an anomaly, 0 normal,
    as plant data labels them."""

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        window: int = 10,
        false_alarm_rate: float = 0.02,
        drift_rows: int | str = "auto",
        relearn_rows: int | str = "auto",
        floor_share: float = 0.01,
        learn_modes: str = "any",
        k: int = 3,
        n: int = 5,
        bridge: int = 30,
    ) -> None:
        self.detector = detector
        self.window = window
        self.false_alarm_rate = false_alarm_rate
        self.drift_rows = drift_rows
        self.relearn_rows = relearn_rows
        self.floor_share = floor_share
        self.learn_modes = learn_modes
        self.k = k
        self.n = n
        self.bridge = bridge

    def fit(self, X: pd.DataFrame, y: None = None) -> AnomalyDetector:
        """Learn normal behaviour from `X` (rows in time order, assumed mostly normal)."""
        self._check_params()
        frame = _numeric(X)
        if len(frame) < MIN_TRAINING_ROWS:
            raise ValueError(
                f"{len(frame)} training rows are too few; at least {MIN_TRAINING_ROWS} are needed"
            )
        self.signals_ = list(frame.columns)
        features = self._features(frame, None)
        self.mode_ = _Mode.fit(features, self, self._floor(frame))
        self.taught_modes_: list[_Mode] = []  # what operators said was normal (learn_normal)
        self.trimmed_fit_rows_ = self.mode_.trimmed_fit_rows
        self.trimmed_calibration_rows_ = self.mode_.trimmed_calibration_rows
        self.history_ = frame.iloc[-(self.window - 1) :] if self.window > 1 else frame.iloc[:0]
        self.drift_rows_ = len(frame) if self.drift_rows == "auto" else int(self.drift_rows)
        self.relearn_rows_ = len(frame) if self.relearn_rows == "auto" else int(self.relearn_rows)
        return self

    def learn_normal(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> AnomalyDetector:
        """Take the rows of `X` as normal from now on (an operator labelled them a false
        alarm): they become an operating mode of their own, with its own model and threshold,
        that later rows are scored in when it explains them. Needs MIN_TRAINING_ROWS rows."""
        check_is_fitted(self)
        frame = _numeric(X)[self.signals_]
        if len(frame) < MIN_TRAINING_ROWS:
            raise ValueError(
                f"{len(frame)} rows are too few to learn as normal; at least "
                f"{MIN_TRAINING_ROWS} are needed"
            )
        features = self._features(frame, history)
        floor = np.maximum(self.mode_.floor, self.floor_share * _level(features))
        self.taught_modes_.append(_Mode.fit(features, self, floor))
        return self

    def new_operating_modes(
        self, X: pd.DataFrame, history: pd.DataFrame | None = None
    ) -> np.ndarray:
        """1 for each row of `X` where a new operating mode was learned (an episode that
        lasted relearn_rows), 0 elsewhere."""
        return self._scored(X, history)[2]

    def _floor(self, frame: pd.DataFrame) -> np.ndarray:
        """Per signal, the smallest deviation that matters: `floor_share` of its level or
        training range (the larger), or RESOLUTION_STEPS of its resolution."""
        values = frame.to_numpy()
        level = _level(values)
        steps = [np.diff(np.unique(column)) for column in values.T]
        resolution = np.array([float(d.min()) if d.size else 0.0 for d in steps])
        return np.maximum(self.floor_share * level, RESOLUTION_STEPS * resolution)

    def anomaly_scores(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """Per row of `X`, the anomaly score in units of the threshold (> 1: above it)."""
        return self._scored(X, history)[0]

    def features(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """Per row of `X`, the feature row it is scored on (rows x signals_, the windowed
        means): what a false alarm label remembers (analytics.learning.remember)."""
        check_is_fitted(self)
        return self._features(self._signals(X), history)

    def score_samples(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """scikit-learn's sign: higher is more normal (minus `anomaly_scores`)."""
        return -self.anomaly_scores(X, history)

    def predict(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """1 for an anomalous row, 0 for a normal one (after the alarm logic)."""
        return episode_rows(self.anomaly_scores(X, history) > 1.0, self.k, self.n, self.bridge)

    def top_signals(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.Series:
        """Per row of `X`, the signal that drives its score most; "" for rows predicted normal."""
        return self.explain(X, history)["top_signal"]

    def explain(self, X: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
        """Everything of one pass over `X`, a row per row: `score` (anomaly_scores), `anomaly`
        (predict), `top_signal` (top_signals) and `new_mode` (new_operating_modes)."""
        scores, top, learned = self._scored(X, history)
        flagged = episode_rows(scores > 1.0, self.k, self.n, self.bridge)
        names = np.array(self.signals_, dtype=object)[top]
        return pd.DataFrame(
            {
                "score": scores,
                "anomaly": flagged,
                "top_signal": np.where(flagged.astype(bool), names, ""),
                "new_mode": learned,
            },
            index=_numeric(X).index,
        )

    def _check_params(self) -> None:
        if not (isinstance(self.window, int) and self.window >= 1):
            raise ValueError(f"window must be a whole number of rows >= 1, got {self.window!r}")
        if not 0.0 < self.false_alarm_rate < 1.0:
            raise ValueError(f"false_alarm_rate must be in (0, 1), got {self.false_alarm_rate}")
        if not 1 <= self.k <= self.n:
            raise ValueError(f"the alarm logic needs 1 <= k <= n, got k={self.k}, n={self.n}")
        for name in ("drift_rows", "relearn_rows"):
            value = getattr(self, name)
            if value != "auto" and not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be 'auto' or a whole number of rows >= 0 (0: off)")
        if self.bridge < 0:
            raise ValueError(f"bridge must be >= 0, got {self.bridge}")
        if self.learn_modes not in LEARN_MODES:
            raise ValueError(f"learn_modes must be one of {', '.join(LEARN_MODES)}")
        if not 0.0 <= self.floor_share < 1.0:
            raise ValueError(f"floor_share must be in [0, 1), got {self.floor_share}")

    def _features(self, frame: pd.DataFrame, history: pd.DataFrame | None) -> np.ndarray:
        lead = 0
        if history is not None and self.window > 1:
            before = _numeric(history)[self.signals_].iloc[-(self.window - 1) :]
            frame, lead = pd.concat([before, frame]), len(before)
        means = frame.rolling(self.window, min_periods=1).mean().to_numpy(dtype=float)
        return means[lead:]

    def _scored(
        self, X: pd.DataFrame, history: pd.DataFrame | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(anomaly scores, index of the top signal, new modes) per row, the baseline
        following drift and the operating modes (see the module docstring)."""
        check_is_fitted(self)
        return _Follower(self).run(self._features(self._signals(X), history))

    def _signals(self, X: pd.DataFrame) -> pd.DataFrame:
        """The columns of `X` the detector was fitted on, as floats."""
        frame = _numeric(X)
        missing = [s for s in self.signals_ if s not in frame.columns]
        if missing:
            raise ValueError(f"X lacks the signals the detector was fitted on: {missing}")
        return frame[self.signals_]


class _Mode:
    """One operating mode: a detector fitted on rows of it, its threshold (split-conformal on
    held-out rows of it), its centre, range, correlations and significance floor."""

    def __init__(
        self,
        model: Any,
        threshold: float,
        rows: np.ndarray,
        floor: np.ndarray,
        wobble: np.ndarray,
    ) -> None:
        self.model, self.threshold, self.floor, self.wobble = model, threshold, floor, wobble
        self.center = np.median(rows, axis=0)
        self.low, self.high = rows.min(axis=0), rows.max(axis=0)
        self.expected = _Expected().fit(rows)
        self.trimmed_fit_rows = self.trimmed_calibration_rows = 0

    @classmethod
    def fit(cls, features: np.ndarray, params: AnomalyDetector, floor: np.ndarray) -> _Mode:
        """Fit on the leading rows, calibrate on the rest; training rows that look like a
        fault (a robust z past FIT_FENCE: median and MAD are not dragged along by it, as a
        PCA's covariance would be) are learnt without, calibration scores past
        CALIBRATION_FENCE are left out of the threshold."""
        fit_rows, calibration_rows = calibration_split(features)
        screen = BaselineDetector(false_alarm_rate=PART_RATE).fit(fit_rows)
        clean = _below_fence(-screen.score_samples(fit_rows), FIT_FENCE)
        # the detector's own threshold only weighs its parts; the mode's is set below
        model = make_detector(params.detector, false_alarm_rate=PART_RATE).fit(fit_rows[clean])
        raw = -model.score_samples(calibration_rows)
        calm = _below_fence(raw, CALIBRATION_FENCE)
        rate = params.false_alarm_rate / DRIFT_MARGIN
        threshold = max(_conformal_quantile(raw[calm], rate), 1e-12)
        wobble = _wobble(features, params.window)
        steady = np.where(wobble > 0, wobble, floor)  # a signal constant in training: its floor
        mode = cls(model, threshold, fit_rows[clean], floor, steady)
        mode.trimmed_fit_rows, mode.trimmed_calibration_rows = (
            int((~clean).sum()),
            int((~calm).sum()),
        )
        return mode

    def consistent(self, rows: np.ndarray) -> bool:
        """Whether most rows keep the mode's correlations: every signal within its floor of
        what the others predict for it (a new operating point, not a broken process)."""
        off = np.abs(rows - self.expected.predict(rows)) > self.floor
        return bool(np.mean(off.any(axis=1)) < 0.5)

    def steady(self, rows: np.ndarray, window: int) -> bool:
        """Whether `rows` vary like a steady state of this mode: the median signal's
        short-term variation (_wobble) at most STEADY_SPREAD times its own in the mode."""
        ratio = _wobble(rows, window) / np.maximum(self.wobble, 1e-12)
        return bool(np.median(ratio) <= STEADY_SPREAD)

    def scores(self, shifted: np.ndarray) -> np.ndarray:
        """Scores in units of the threshold, capped under it without a significant deviation:
        no signal beyond the mode's range by more than its floor, nor off what the others
        predict for it (their correlations in the mode) by more than its floor."""
        scores = -self.model.score_samples(shifted) / self.threshold
        beyond = (shifted < self.low - self.floor) | (shifted > self.high + self.floor)
        off = np.abs(shifted - self.expected.predict(shifted)) > self.floor
        significant = (beyond | off).any(axis=1)
        return np.where(significant, scores, np.minimum(scores, BELOW_LIMIT))


class _Expected:
    """What each signal should read given the others: the projection of a row on the principal
    components of the training rows (standardized) that explain EXPECTED_VARIANCE of them."""

    def fit(self, X: np.ndarray) -> _Expected:
        self.mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.pca_ = PCA(n_components=EXPECTED_VARIANCE, svd_solver="full")
        self.pca_.fit((X - self.mean_) / self.scale_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = (X - self.mean_) / self.scale_
        return self.pca_.inverse_transform(self.pca_.transform(z)) * self.scale_ + self.mean_


class _Follower:
    """One pass over a run's features, CHUNK_ROWS at a time (one model call per chunk, more
    when a row of it is above the threshold).

    - The current mode's baseline offset follows the rows below the threshold, row by row, and
      stays where it was from a chunk's first row above it to the chunk's end.
    - A chunk with rows above the threshold that another known mode explains switches to it.
    - An episode open for relearn_rows teaches a new mode from its last relearn_rows rows.
    """

    def __init__(self, detector: AnomalyDetector) -> None:
        self.detector = detector
        self.rate = 1.0 / detector.drift_rows_ if detector.drift_rows_ else 0.0
        self.known = [detector.mode_, *detector.taught_modes_]  # trained or taught: kept
        self.learned: list[_Mode] = []  # from long episodes: the latest MAX_MODES
        self.mode = detector.mode_
        self.offset = np.zeros(len(detector.signals_))
        self.frozen = 0  # rows an episode has been open for
        self.last_above = -(10**12)  # the last row above the threshold

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, top signal, new modes) per row."""
        scores = np.empty(len(features))
        top = np.empty(len(features), dtype=np.intp)
        learned = np.zeros(len(features), dtype=np.int8)
        for start in range(0, len(features), CHUNK_ROWS):
            rows = slice(start, min(start + CHUNK_ROWS, len(features)))
            shifted, scores[rows] = self._chunk(features[rows])
            top[rows] = np.argmax(self.mode.model.contributions(shifted), axis=1)
            if self._episode(features, rows, scores[rows]):
                learned[rows.stop - 1] = 1
        return scores, top, learned

    def _chunk(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chunk's shifted rows and scores, the offset moved past it."""
        offsets = self._taught(chunk)
        shifted = chunk - offsets[:-1]
        scores = self.mode.scores(shifted)
        above = np.flatnonzero(scores > 1.0)
        if not above.size:
            self.offset = offsets[-1]
            return shifted, scores
        if self._switch(chunk):
            return chunk - self.offset, self.mode.scores(chunk - self.offset)
        first = int(above[0])  # the offset up to it is right; from it on, it stays
        self.offset = offsets[first]
        shifted[first:] = chunk[first:] - self.offset
        scores[first:] = self.mode.scores(shifted[first:])
        return shifted, self._best_of_modes(chunk, scores)

    def _best_of_modes(self, chunk: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Each row's score in the known mode that explains it best: a row another mode
        explains is normal there, whichever mode the chunk as a whole is in."""
        for mode in [*self.known, *self.learned]:
            if mode is not self.mode:
                scores = np.minimum(scores, mode.scores(chunk))
        return scores

    def _switch(self, chunk: np.ndarray) -> bool:
        """Make current another known mode that explains the chunk (at most SWITCH_SHARE of
        its rows above that mode's threshold), if there is one."""
        for mode in [*self.known, *self.learned]:
            if mode is not self.mode and (mode.scores(chunk) > 1.0).mean() <= SWITCH_SHARE:
                self.mode, self.offset = mode, np.zeros_like(self.offset)
                return True
        return False

    def _taught(self, chunk: np.ndarray) -> np.ndarray:
        """(rows + 1, signals): the offset before each row and after the last, every row
        taken as below the threshold (an exponentially weighted mean of the offsets)."""
        offsets = np.empty((len(chunk) + 1, len(self.offset)))
        offsets[0] = self.offset
        target = chunk - self.mode.center
        for i in range(len(chunk)):
            offsets[i + 1] = offsets[i] + self.rate * (target[i] - offsets[i])
        return offsets

    def _episode(self, features: np.ndarray, rows: slice, scores: np.ndarray) -> bool:
        """Track the open episode; True if it has lasted relearn_rows and a new mode was
        learned from its last relearn_rows rows."""
        detector = self.detector
        above = np.flatnonzero(scores > 1.0)
        if above.size:
            self.last_above = rows.start + int(above[-1])
        if rows.stop - self.last_above > detector.bridge:
            self.frozen = 0
            return False
        self.frozen += rows.stop - rows.start
        if not detector.relearn_rows_ or self.frozen < detector.relearn_rows_:
            return False
        recent = features[max(rows.stop - detector.relearn_rows_, 0) : rows.stop]
        if detector.learn_modes == "consistent" and not self.mode.consistent(recent):
            self.frozen = 0  # a fault that breaks the correlations: it stays one
            return False
        if not self.mode.steady(recent, detector.window):
            self.frozen = 0  # still moving: a fault, not a new steady operating point
            return False
        floor = np.maximum(detector.mode_.floor, detector.floor_share * _level(recent))
        self.mode = _Mode.fit(recent, detector, floor)
        self.learned = [*self.learned[-(MAX_MODES - 1) :], self.mode]
        self.offset = np.zeros_like(self.offset)
        self.frozen, self.last_above = 0, -(10**12)
        return True


def _level(values: np.ndarray) -> np.ndarray:
    """Per column, the larger of its range and its median's size: what a share of it means."""
    return np.maximum(np.ptp(values, axis=0), np.abs(np.median(values, axis=0)))


def _wobble(features: np.ndarray, lag: int) -> np.ndarray:
    """Per column, the median change between a row and the one `lag` rows before (two
    windows that do not overlap): the noise and fast swings, not slow load changes, and not
    the few rows of a step into a new operating point."""
    lag = max(min(lag, len(features) - 1), 1)
    return np.asarray(np.median(np.abs(features[lag:] - features[:-lag]), axis=0))


def episode_rows(above: np.ndarray, k: int, n: int, bridge: int) -> np.ndarray:
    """0/1 per row: inside an episode that k of n rows above the threshold opened and that
    gaps shorter than `bridge` rows do not close."""
    verdict = np.zeros(len(above), dtype=np.int8)
    recent: list[int] = []
    last = None  # the open episode's last row above the threshold
    for i, hit in enumerate(np.asarray(above, dtype=bool)):
        if last is not None:
            if hit:
                verdict[last + 1 : i + 1] = 1
                last = i
            elif i - last >= bridge:
                last = None
            continue
        if hit:
            recent = [j for j in recent if j > i - n] + [i]
            if len(recent) >= k:
                verdict[i], last, recent = 1, i, []
    return verdict


def _below_fence(scores: np.ndarray, fence: float) -> np.ndarray:
    """True for scores below Tukey's far-out fence, `fence` interquartile ranges above the upper
    quartile, on the square root of the scores: the statistics are squares (T², SPE) or ratios
    of them, whose roots are close to a normal |z|, so clean data loses almost no rows."""
    roots = np.sqrt(np.maximum(scores, 0.0))
    low, high = np.quantile(roots, [0.25, 0.75])
    return roots <= high + fence * (high - low)


def _conformal_quantile(scores: np.ndarray, rate: float) -> float:
    """The ceil((m + 1)(1 - rate))-th smallest of m held-out scores: a new exchangeable score
    exceeds it with probability at most `rate` (the largest when m is too small for that)."""
    ranked = np.sort(np.asarray(scores, dtype=float))
    rank = int(np.ceil((len(ranked) + 1) * (1.0 - rate)))
    return float(ranked[min(rank, len(ranked)) - 1])


def _numeric(X: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of signals, got {type(X).__name__}")
    frame = X.astype(float)
    if not np.isfinite(frame.to_numpy()).all():
        raise ValueError("the signals must be finite numbers (no NaN or infinity)")
    return frame
