"""Alarm logic: k-of-n opening, hold-off closing, one fault = one episode, streaming == batch."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.episodes import AlarmLogic, Episode


def _run(logic: AlarmLogic, above: list[int], scores: list[float] | None = None) -> list[Episode]:
    scores = scores or [2.0 if a else 0.0 for a in above]
    times = np.arange(len(above), dtype=float)
    return logic.episodes(times, scores, 1.0, [f"s{i}" for i in range(len(above))])


def test_opens_only_on_k_of_n() -> None:
    logic = AlarmLogic(k=3, n=5, hold_off_s=2.0)
    assert _run(logic, [1, 0, 1, 0, 0, 1, 0, 0, 1, 0]) == []  # never 3 in any 5
    (episode,) = _run(logic, [0, 1, 0, 1, 1, 0, 0, 0])
    assert episode.start == 4.0  # the row that made it 3 of 5: when it could first be known
    assert episode.end == 4.0


def test_hold_off_closes_and_a_late_row_extends() -> None:
    logic = AlarmLogic(k=1, n=1, hold_off_s=3.0)
    opened, closed = logic.update(0.0, 5.0, 1.0, "a")
    assert opened == Episode(0.0, 0.0, 5.0, "a") and closed is None
    assert logic.update(1.0, 0.0, 1.0, "b") == (None, None)
    assert logic.update(2.0, 2.0, 1.0, "b") == (None, None)  # back above within hold-off
    assert logic.update(4.0, 0.0, 1.0, "c") == (None, None)  # 2 s below: still open
    _, closed = logic.update(5.0, 0.0, 1.0, "c")
    assert closed == Episode(0.0, 2.0, 5.0, "a")
    assert logic.open_episode is None


def test_one_noisy_fault_is_one_episode() -> None:
    rng = np.random.default_rng(0)
    normal = rng.random(600) < 0.002  # rare blips: never k of n
    fault = rng.random(300) < 0.6  # a fault that crosses and re-crosses the threshold
    above = [*normal.astype(int), *fault.astype(int), *np.zeros(100, int)]
    (episode,) = _run(AlarmLogic(k=3, n=5, hold_off_s=30.0), above)
    assert 600 <= episode.start < 610 and 880 <= episode.end < 900


def test_peak_is_the_highest_row_and_top_signal_the_one_that_drove_the_opening() -> None:
    logic = AlarmLogic(k=2, n=3, hold_off_s=5.0)
    scores = [0.0, 9.0, 3.0, 4.0, 2.0, 0.0]  # the peak (9) precedes the opening row
    (episode,) = _run(logic, [int(s > 1) for s in scores], scores)
    assert (episode.peak_score, episode.top_signal) == (9.0, "s1")
    scores = [0.0, 2.0, 3.0, 7.0, 2.0, 0.0]  # opened by rows 1-2; the later peak is an after-effect
    (episode,) = _run(logic, [int(s > 1) for s in scores], scores)
    assert (episode.peak_score, episode.top_signal) == (7.0, "s2")


def test_nan_scores_are_never_above() -> None:
    logic = AlarmLogic(k=1, n=1)
    assert logic.episodes([0.0, 1.0], [np.nan, np.nan], 1.0, ["a", "b"]) == []


def test_streaming_equals_batch() -> None:
    rng = np.random.default_rng(5)
    level = np.repeat(rng.random(40) < 0.3, 50)  # stretches of fault and of normal
    scores = np.where(level, 1.5, 0.5) + rng.normal(0, 0.4, level.size)
    times = np.cumsum(rng.uniform(0.5, 1.5, level.size))  # irregular, as after dropped rows
    tops = [f"s{i % 7}" for i in range(level.size)]
    thresholds = np.full(level.size, 1.0)
    logic = AlarmLogic(k=3, n=5, hold_off_s=20.0)
    batch = logic.episodes(times, scores, thresholds, tops)
    streamed, opened = [], []
    for row in zip(times, scores, thresholds, tops, strict=True):
        started, closed = logic.update(*row)
        opened += [started] if started else []
        streamed += [closed] if closed else []
    last = logic.finish()
    streamed += [last] if last else []
    assert len(batch) > 3
    assert streamed == batch
    assert [e.start for e in opened] == [e.start for e in batch]


def test_batch_leaves_the_streaming_state_alone() -> None:
    logic = AlarmLogic(k=1, n=1)
    opened, _ = logic.update(0.0, 2.0, 1.0, "a")
    assert _run(logic, [0, 0, 0]) == []
    assert logic.open_episode == opened


@pytest.mark.parametrize(("k", "n", "hold_off"), [(0, 5, 1.0), (6, 5, 1.0), (3, 5, -1.0)])
def test_bad_settings_are_refused(k: int, n: int, hold_off: float) -> None:
    with pytest.raises(ValueError):
        AlarmLogic(k=k, n=n, hold_off_s=hold_off)
