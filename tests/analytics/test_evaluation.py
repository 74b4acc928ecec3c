"""Event-level scoring with hand-made episodes: hits, misses, duplicates, false alarms."""

from __future__ import annotations

import json

import pytest

from analytics.episodes import Episode
from analytics.evaluation import ScoredRun, TrueFault, evaluate, evaluation_json

DAY = 86400.0
JAM = TrueFault("conveyor", "conveyor_jam", "current_a", 1000.0, 1300.0, "abrupt")
WEAR = TrueFault("conveyor", "bearing_wear", "vibration_mm_s", 5000.0, 5600.0, "gradual")
DRIFT = TrueFault("pasteurizer", "sensor_drift", "holding_temp_c", 9000.0, 9600.0, "gradual")


def ep(start: float, end: float, top: str = "current_a") -> Episode:
    return Episode(start=start, end=end, peak_score=5.0, top_signal=top)


def run(episodes: dict[str, list[Episode]], faults=(JAM, WEAR, DRIFT), end=DAY) -> ScoredRun:
    return ScoredRun(episodes, list(faults), 0.0, end, sample_s=2.0)


def test_perfect_detection_scores_one_with_delays_in_seconds_and_samples():
    result = evaluate(
        [
            run(
                {
                    "conveyor": [ep(1003, 1400), ep(5040, 5700, "vibration_mm_s")],
                    "pasteurizer": [ep(9060, 9700, "holding_temp_c")],
                }
            )
        ],
        grace_s=600,
    )
    o = result.overall
    assert (o.precision, o.recall, o.f1, o.top_signal_accuracy) == (1.0, 1.0, 1.0, 1.0)
    assert (o.faults, o.caught, o.duplicates, o.false_alarms) == (3, 3, 0, 0)
    assert o.median_delay_s == 40.0 and o.median_delay_samples == 20.0
    assert o.p90_delay_s == pytest.approx(40 + 0.8 * 20)  # numpy's linear percentile of 3, 40, 60
    assert result.per_kind["abrupt"].median_delay_s == 3.0
    assert result.per_kind["gradual"].median_delay_s == 50.0
    assert result.per_fault["sensor_drift"].recall == 1.0
    assert o.false_alarms_per_day == 0.0


def test_missed_fault_lowers_recall_and_has_no_delay():
    result = evaluate([run({"conveyor": [ep(1003, 1400)]})], grace_s=600)
    assert result.overall.recall == pytest.approx(1 / 3)
    assert result.overall.precision == 1.0
    assert result.overall.f1 == pytest.approx(0.5)
    drift = result.per_fault["sensor_drift"]
    assert (drift.recall, drift.median_delay_s, drift.top_signal_accuracy) == (0.0, None, None)
    assert drift.precision is None  # nothing flagged for it at all


def test_episode_in_the_grace_after_the_end_still_catches_it_but_not_after():
    inside = evaluate([run({"conveyor": [ep(1800, 1900)]}, faults=[JAM])], grace_s=600)
    assert inside.overall.recall == 1.0 and inside.overall.median_delay_s == 800.0
    outside = evaluate([run({"conveyor": [ep(1950, 2000)]}, faults=[JAM])], grace_s=600)
    assert outside.overall.recall == 0.0 and outside.overall.false_alarms == 1


def test_an_episode_open_before_the_fault_catches_it_with_zero_delay():
    result = evaluate([run({"conveyor": [ep(900, 1100)]}, faults=[JAM])], grace_s=0)
    assert result.overall.recall == 1.0 and result.overall.median_delay_s == 0.0


def test_fragments_of_one_fault_are_duplicates_that_cost_precision():
    fragments = [ep(1003, 1050), ep(1100, 1150), ep(1200, 1250, "torque_pct")]
    result = evaluate([run({"conveyor": fragments}, faults=[JAM])], grace_s=600)
    o = result.overall
    assert (o.caught, o.duplicates, o.precision, o.recall) == (1, 2, pytest.approx(1 / 3), 1.0)
    assert o.top_signal_accuracy == 1.0  # judged on the first episode
    assert result.per_fault["conveyor_jam"].precision == pytest.approx(1 / 3)


def test_wrong_top_signal_is_counted_per_caught_fault():
    result = evaluate(
        [run({"conveyor": [ep(1003, 1400, "torque_pct"), ep(5040, 5700, "vibration_mm_s")]})],
        grace_s=600,
    )
    assert result.overall.top_signal_accuracy == 0.5
    assert result.per_fault["conveyor_jam"].top_signal_accuracy == 0.0


def test_other_machines_during_a_fault_are_secondary_and_quiet_time_is_false_alarms():
    episodes = {
        "conveyor": [ep(1003, 1400)],
        "filler": [ep(1010, 1300, "fill_rate_bpm")],  # starved by the jam: secondary
        "capper": [ep(40000, 40100, "speed_bpm"), ep(50000, 50010, "speed_bpm")],  # nothing on
    }
    result = evaluate([run(episodes, faults=[JAM])], grace_s=600)
    assert result.secondary_episodes == 1
    o = result.overall
    assert o.false_alarms == 2
    assert o.precision == pytest.approx(1 / 3)
    fault_free_days = (DAY - 900) / DAY
    assert result.fault_free_days == pytest.approx(fault_free_days)
    assert o.false_alarms_per_day == pytest.approx(2 / fault_free_days)
    assert result.per_fault["conveyor_jam"].false_alarms_per_day is None
    assert result.per_fault["conveyor_jam"].precision == 1.0


def test_runs_add_up_and_overlapping_fault_windows_are_not_double_counted():
    overlapping = [JAM, TrueFault("filler", "stuck_sensor", "fill_volume_ml", 1100, 1200, "abrupt")]
    one = run({"conveyor": [ep(1003, 1400)]}, faults=overlapping, end=DAY / 2)
    two = run({"conveyor": [ep(7000, 7100)]}, faults=[JAM], end=DAY / 2)
    result = evaluate([one, two], grace_s=600)
    assert result.fault_free_days == pytest.approx((DAY - 2 * 900) / DAY)
    o = result.overall
    assert (o.faults, o.caught, o.false_alarms) == (3, 1, 1)
    assert result.per_fault["stuck_sensor"].recall == 0.0


def test_faults_outside_the_observed_span_are_ignored():
    result = evaluate([ScoredRun({}, [JAM, DRIFT], 2000.0, 8000.0, 1.0)], grace_s=0)
    assert result.overall.faults == 0 and result.overall.recall is None
    assert result.fault_free_days == pytest.approx(6000 / DAY)


def test_json_has_the_issue_shape_and_is_serialisable():
    result = evaluate([run({"conveyor": [ep(1003, 1400)]})], grace_s=600)
    doc = json.loads(
        json.dumps(evaluation_json(result, seeds=[11, 12], training_seeds=[1], detector="pca"))
    )
    keys = {
        "precision",
        "recall",
        "f1",
        "median_delay_s",
        "p90_delay_s",
        "false_alarms_per_day",
        "top_signal_accuracy",
    }
    assert keys <= set(doc["overall"])
    assert set(doc["per_fault"]) == {"conveyor_jam", "bearing_wear", "sensor_drift"}
    assert all(keys <= set(scores) for scores in doc["per_fault"].values())
    assert doc["seeds"] == [11, 12] and doc["detector"] == "pca"
    assert doc["training_seeds"] == [1]


def test_a_top_signal_among_the_faults_symptoms_is_right_but_only_the_main_one_is_main():
    sag = TrueFault(
        "energy_meter",
        "voltage_sag",
        "voltage_l1_v",
        1000.0,
        1300.0,
        "abrupt",
        ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v"),
    )
    episodes = {"energy_meter": [ep(1003, 1400, "voltage_l2_v")]}
    o = evaluate([run(episodes, faults=[sag])], grace_s=600).overall
    assert (o.caught, o.top_signal_accuracy, o.main_signal_accuracy) == (1, 1.0, 0.0)
    episodes = {"energy_meter": [ep(1003, 1400, "current_l1_a")]}  # not a symptom
    o = evaluate([run(episodes, faults=[sag])], grace_s=600).overall
    assert (o.top_signal_accuracy, o.main_signal_accuracy) == (0.0, 0.0)


def test_a_fault_that_spreads_is_scored_on_the_origin_its_incident_names():
    """The jam on the conveyor also flags the filler: right when the conveyor opened first,
    wrong when the filler did; the bearing wear stays on its machine and does not count."""
    right = {"conveyor": [ep(1003, 1400)], "filler": [ep(1020, 1350, "fill_rate")]}
    wrong = {"conveyor": [ep(1040, 1400)], "filler": [ep(1003, 1350, "fill_rate")]}
    wear = [ep(5040, 5700, "vibration_mm_s")]
    for episodes, accuracy in ((right, 1.0), (wrong, 0.0)):
        episodes["conveyor"] += wear
        result = evaluate([run(episodes, faults=[JAM, WEAR])], grace_s=600)
        assert result.overall.spread_faults == 1
        assert result.overall.incident_origin_accuracy == accuracy
    alone = evaluate([run({"conveyor": [ep(1003, 1400)]}, faults=[JAM])], grace_s=600)
    assert (alone.overall.spread_faults, alone.overall.incident_origin_accuracy) == (0, None)


def test_a_fault_is_scored_on_its_own_incident_not_on_a_long_one_still_under_way():
    """The compressor's episode from an earlier upset is still open when the conveyor jams,
    but began more than SPREAD_S before: the jam starts an incident of its own, which names
    the conveyor, and the jam is scored on that one."""
    episodes = {
        "air_compressor": [ep(0, 1500, "pressure_bar")],
        "conveyor": [ep(1003, 1400)],
        "filler": [ep(1004, 1350, "fill_rate")],
    }
    o = evaluate([run(episodes, faults=[JAM])], grace_s=600).overall
    assert (o.spread_faults, o.incident_origin_accuracy) == (1, 1.0)


def test_a_fault_caught_by_an_episode_open_since_before_it_did_not_spread():
    """A knock-on episode of the filler's upset is still open when the capper's own sensor
    sticks; the capper joins that incident, whose origin is the filler. The other machines'
    episodes all opened before the fault: they are no effect of it, so it did not spread."""
    stuck = TrueFault("capper", "stuck_sensor", "torque_nm", 1000.0, 1300.0, "abrupt")
    episodes = {"filler": [ep(900, 1200, "fill_rate")], "capper": [ep(950, 1400, "torque_nm")]}
    o = evaluate([run(episodes, faults=[stuck])], grace_s=600).overall
    assert (o.caught, o.spread_faults, o.incident_origin_accuracy) == (1, 0, None)
