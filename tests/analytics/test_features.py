"""Feature rows from windows: grid resampling, level/spread/slope, window arithmetic, gaps."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.features import (
    SPREAD_FLOOR,
    Frame,
    WindowSpec,
    feature_names,
    feature_signal,
    frame_from_samples,
    window_features,
)


def _frame(columns: dict[str, np.ndarray], start: float = 1.0, period: float = 1.0) -> Frame:
    values = np.column_stack(list(columns.values()))
    return Frame(start + period * np.arange(len(values)), tuple(columns), values)


def test_window_spec_counts_samples_and_rejects_off_grid_lengths() -> None:
    spec = WindowSpec(period_s=0.5, window_s=30.0, step_s=2.0)
    assert (spec.width, spec.stride) == (60, 4)
    with pytest.raises(ValueError, match="whole number of periods"):
        WindowSpec(period_s=1.0, window_s=30.5)
    with pytest.raises(ValueError, match="whole number of periods"):
        WindowSpec(period_s=2.0, step_s=1.0)
    with pytest.raises(ValueError, match="positive"):
        WindowSpec(period_s=0.0)
    assert WindowSpec(period_s=0.5, short_s=2.0).short_width == 4
    for short in (1.0, 31.0):
        with pytest.raises(ValueError, match="short window"):
            WindowSpec(window_s=30.0, short_s=short)


KINDS = ("level", "spread", "slope", "short_level", "short_spread")


def test_level_spread_slope_of_known_signals() -> None:
    n = 100
    t = np.arange(n, dtype=float)
    frame = _frame({"ramp": 5.0 + 2.0 * t, "flat": np.full(n, 0.1), "sine": np.sin(t)})
    spec = WindowSpec(window_s=30.0, short_s=5.0)
    times, X, names = window_features(frame, spec)
    assert names == [f"{s}:{k}" for s in ("ramp", "flat", "sine") for k in KINDS]
    ramp = dict(zip(KINDS, X.T[:5], strict=True))
    np.testing.assert_allclose(ramp["slope"], 2.0)
    np.testing.assert_allclose(ramp["spread"], np.log(2.0 * np.sqrt((30**2 - 1) / 12)))
    np.testing.assert_allclose(ramp["short_spread"], np.log(2.0 * np.sqrt((5**2 - 1) / 12)))
    assert ramp["level"][-1] == pytest.approx((5.0 + 2.0 * t[-30:]).mean())
    assert ramp["short_level"][-1] == pytest.approx((5.0 + 2.0 * t[-5:]).mean())
    flat = dict(zip(KINDS, X.T[5:10], strict=True))
    np.testing.assert_allclose(flat["level"], 0.1)
    np.testing.assert_allclose(flat["short_level"], 0.1)
    np.testing.assert_allclose(flat["slope"], 0.0, atol=1e-12)
    # a constant: its log spread sits at the floor, far below any sensor's noise
    np.testing.assert_allclose(flat["spread"], np.log(SPREAD_FLOOR))
    np.testing.assert_allclose(flat["short_spread"], np.log(SPREAD_FLOOR))
    assert times[-1] == frame.times[-1]


def test_a_frozen_reading_is_far_out_in_the_short_spread_once_it_fills_the_short_window() -> None:
    values = 20.0 + 0.05 * np.random.default_rng(0).standard_normal(100)
    values[60:] = values[60]  # stuck from sample 60 on
    spec = WindowSpec(window_s=30.0, short_s=2.0)
    times, X, _ = window_features(_frame({"x": values}, start=0.0), spec)
    short_spread = X[:, 4]
    normal = short_spread[times < 60]
    assert short_spread[times == 61] == pytest.approx(np.log(SPREAD_FLOOR))
    assert np.log(SPREAD_FLOOR) < normal.min() - 10  # e^10 below the quietest normal pair
    assert X[times == 61, 1] > normal.min()  # the 30 s spread has not noticed yet


def test_slope_is_per_second_whatever_the_period() -> None:
    t = np.arange(120) * 0.5
    frame = Frame(t, ("x",), (3.0 * t)[:, None])
    _, X, _ = window_features(frame, WindowSpec(period_s=0.5, window_s=10.0, step_s=0.5))
    np.testing.assert_allclose(X[:, 2], 3.0)


def test_rows_sit_on_step_multiples_and_one_window_gives_one_row() -> None:
    frame = _frame({"x": np.arange(100.0)})  # times 1..100
    times, X, _ = window_features(frame, WindowSpec(window_s=30.0, step_s=5.0))
    np.testing.assert_array_equal(times, np.arange(30.0, 101.0, 5.0))
    assert X.shape == (15, 5)
    exact = Frame(frame.times[-30:], frame.signals, frame.values[-30:])
    times_one, X_one, _ = window_features(exact, WindowSpec(window_s=30.0))
    assert times_one.tolist() == [100.0]
    np.testing.assert_allclose(X_one[0], X[-1])  # online (latest window) == batch


def test_too_few_samples_give_no_rows_and_say_so() -> None:
    notes: list[str] = []
    times, X, names = window_features(_frame({"x": np.ones(10)}), WindowSpec(), warnings=notes)
    assert times.shape == (0,) and X.shape == (0, 5) and len(names) == 5
    assert "fewer than one window" in notes[0]


def test_windows_with_gaps_are_dropped_and_counted() -> None:
    values = np.random.default_rng(0).normal(size=(100, 2))
    values[50, 1] = np.nan
    notes: list[str] = []
    frame = Frame(np.arange(1.0, 101.0), ("a", "b"), values)
    times, X, _ = window_features(frame, WindowSpec(window_s=30.0), warnings=notes)
    assert len(times) == 71 - 30  # windows ending at index 50..79 see the gap
    assert not np.isin(np.arange(51.0, 81.0), times).any()
    assert np.isfinite(X).all()
    assert notes == ["dropped 30 of 71 windows with gaps (NaN) in: b (30)"]


def test_frame_from_samples_holds_last_value_on_a_period_grid() -> None:
    times = np.array([10.2, 10.7, 11.0, 12.9, 12.9, 13.5, 15.1])
    signals = np.array(["b", "a", "b", "a", "a", "b", "a"], dtype=object)
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.inf, 6.0])
    frame = frame_from_samples(times, signals, values, WindowSpec(period_s=1.0))
    assert frame.signals == ("a", "b")
    np.testing.assert_array_equal(frame.times, [11.0, 12.0, 13.0, 14.0, 15.0])
    expected_a = [2.0, 2.0, 5.0, 5.0, 5.0]  # equal timestamps: the later sample wins
    expected_b = [3.0, 3.0, 3.0, np.nan, np.nan]  # inf is a gap, held until the next sample
    np.testing.assert_array_equal(frame.values[:, 0], expected_a)
    np.testing.assert_array_equal(frame.values[:, 1], expected_b)


def test_frame_from_samples_is_nan_before_a_signals_first_sample() -> None:
    frame = frame_from_samples(
        np.array([0.0, 3.0]), np.array(["a", "b"]), np.array([1.0, 2.0]), WindowSpec()
    )
    np.testing.assert_array_equal(frame.values[:, 1], [np.nan, np.nan, np.nan, 2.0])
    empty = frame_from_samples(np.array([]), np.array([]), np.array([]), WindowSpec())
    assert empty.values.shape == (0, 0)


def test_a_frame_on_another_period_is_refused() -> None:
    with pytest.raises(ValueError, match="period"):
        window_features(_frame({"x": np.ones(60)}, period=2.0), WindowSpec(period_s=1.0))


def test_feature_signal_maps_a_column_back_to_its_signal() -> None:
    names = feature_names(["current_a", "temp:inner"])
    assert [feature_signal(n) for n in names] == ["current_a"] * 5 + ["temp:inner"] * 5
    assert feature_signal("current_a:level") == "current_a"
