"""FalseAlarmMemory: a labelled false alarm's pattern quiets its repeats, not faults."""

from __future__ import annotations

import numpy as np

from analytics.labels import FalseAlarmMemory

SCALE = np.array([1.0, 1.0])  # each signal's normal spread


def rows(*values: tuple[float, float]) -> np.ndarray:
    return np.array(values, dtype=float)


def memory() -> FalseAlarmMemory:
    """A cleaning cycle lifted signal 0 to 10-12 and was labelled a false alarm."""
    labelled = rows((10.0, 0.0), (11.0, 0.1), (12.0, -0.1))
    return FalseAlarmMemory(margin=1.0).fit(labelled, np.array([0, 0, 0]), SCALE)


def test_the_same_signal_in_the_labelled_range_is_the_false_alarm_again() -> None:
    later = rows((9.5, 0.0), (12.9, 0.0))
    assert memory().suppresses(later, np.array([0, 0])).tolist() == [True, True]


def test_a_fault_that_goes_further_or_shows_on_another_signal_still_alarms() -> None:
    later = rows((15.0, 0.0), (11.0, 8.0), (11.0, 0.0))
    top = np.array([0, 1, -1])  # further on signal 0; driven by signal 1; not flagged
    assert memory().suppresses(later, top).tolist() == [False, False, False]


def test_an_episode_mostly_like_the_false_alarm_is_quieted_whole_and_others_kept() -> None:
    X = rows(*[(11.0, 0.0)] * 4, (0.0, 0.0), *[(11.0, 0.0)] * 2, *[(20.0, 0.0)] * 3)
    flags = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=bool)
    top = np.where(flags, 0, -1)
    quiet = memory().quiet(flags, X, top)
    # the first episode is the false alarm again; the second mostly a fault beyond its range
    assert quiet.tolist() == [False] * 5 + [True] * 5
