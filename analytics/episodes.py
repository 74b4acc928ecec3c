"""Alarm logic: turn a stream of anomaly scores into episodes, so that one fault is one episode.

An episode opens when k of the last n rows are above the threshold, and closes once rows have
stayed below it for `hold_off_s`. `start` is the time of the row that opened it (when an operator
could first know, so detection delays are honest), `end` the time of its last row above the
threshold. The peak score is the episode's highest; the top signal is the one that drove the
flag: the top signal of the highest of the rows that opened it. It stays so for the whole episode
(the opening event and the closing one name the same signal), because what a fault does first
names it, where its peak is often an after-effect (a worn bearing's heat, a fouled exchanger's
falling product temperature once its valve is wide open).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np


@dataclass(frozen=True)
class ScoreTrace:
    """Anomaly scores over time (higher = more anomalous, as written to `anomaly.score`)."""

    times: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Episode:
    """One anomaly episode on one machine (times in the scores' time base)."""

    start: float
    end: float
    peak_score: float
    top_signal: str


class AlarmSettings(TypedDict):
    """AlarmLogic's parameters, as a model file and the training settings hold them."""

    k: int
    n: int
    hold_off_s: float


class AlarmLogic:
    """k-of-n opening and hold-off closing, streaming (`update`) or batch (`episodes`).

    One instance per machine when streaming: it keeps the state of the open episode.
    """

    def __init__(self, k: int = 3, n: int = 5, hold_off_s: float = 30.0) -> None:
        if not 1 <= k <= n:
            raise ValueError(f"alarm logic needs 1 <= k <= n, got k={k}, n={n}")
        if hold_off_s < 0:
            raise ValueError(f"hold_off_s must be >= 0, got {hold_off_s}")
        self.k, self.n, self.hold_off_s = k, n, hold_off_s
        self._recent: deque[tuple[float, float, str] | None] = deque(maxlen=n)
        self._open: Episode | None = None

    @property
    def open_episode(self) -> Episode | None:
        """The episode in progress, if any (its end is the latest row above threshold)."""
        return self._open

    def update(
        self, t: float, anomaly_score: float, threshold: float, top_signal: str
    ) -> tuple[Episode | None, Episode | None]:
        """Feed one row; returns (episode opened by this row, episode closed by this row)."""
        above = bool(anomaly_score > threshold)  # NaN (no score) is never above
        if self._open is not None:
            return None, self._continue(self._open, t, anomaly_score, above)
        self._recent.append((t, anomaly_score, top_signal) if above else None)
        hits = [row for row in self._recent if row is not None]
        if len(hits) < self.k:
            return None, None
        peak = max(hits, key=lambda row: row[1])
        self._open = Episode(t, t, peak[1], peak[2])
        self._recent.clear()
        return self._open, None

    def finish(self) -> Episode | None:
        """End of data: the open episode (no longer tracked), if any."""
        episode, self._open = self._open, None
        self._recent.clear()
        return episode

    def episodes(
        self,
        times: Sequence[float] | np.ndarray,
        anomaly_scores: Sequence[float] | np.ndarray,
        threshold: float | np.ndarray,
        top_signals: Sequence[str],
    ) -> list[Episode]:
        """All episodes of a scored series, the last one possibly still open at its end.

        Same rows in, same episodes out as `update` row by row; this instance's streaming state
        is not touched.
        """
        logic = AlarmLogic(self.k, self.n, self.hold_off_s)
        limits = np.broadcast_to(np.asarray(threshold, dtype=float), np.shape(anomaly_scores))
        found = []
        for row in zip(times, anomaly_scores, limits, top_signals, strict=True):
            _, closed = logic.update(float(row[0]), float(row[1]), float(row[2]), row[3])
            if closed is not None:
                found.append(closed)
        last = logic.finish()
        return [*found, last] if last is not None else found

    def _continue(self, episode: Episode, t: float, score: float, above: bool) -> Episode | None:
        if above:
            self._open = replace(episode, end=t, peak_score=max(score, episode.peak_score))
            return None
        if t - episode.end >= self.hold_off_s:
            self._open = None
            return episode
        return None


def segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive True values."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))
