"""Labelled runs: deterministic, faithful to the schedule, and the faulted signal really moves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plc_sim.faults import FAULT_KINDS, FaultError
from plc_sim.scenarios import (
    SYMPTOMS,
    FaultSpec,
    campaign_faults,
    labelled_run,
    on_the_wire,
    standard_campaign,
)
from plc_sim.spec import LineSpec

SETTLE_S = 900.0


def test_same_seed_same_run_other_seed_other_run(line: LineSpec):
    faults = [FaultSpec("conveyor", "conveyor_jam", 1.0, 1000.0, 60.0)]
    a, b, c = (
        labelled_run(line, seed=s, duration_s=300, faults=faults, settle_s=SETTLE_S)
        for s in (5, 5, 6)
    )
    for machine, trace in a.machines.items():
        np.testing.assert_array_equal(trace.values, b.machines[machine].values)
    assert a.faults == b.faults
    assert not np.array_equal(a.machines["conveyor"].values, c.machines["conveyor"].values)


def test_grid_holds_every_exposed_signal_after_the_settling_time(line: LineSpec):
    run = labelled_run(line, seed=1, duration_s=120, dt_s=0.5, settle_s=60)
    assert run.times[0] == 60.5 and run.times[-1] == 180.0 and len(run.times) == 240
    assert set(run.machines) == set(line.machines)
    for name, trace in run.machines.items():
        assert set(trace.signals) == set(line.machines[name].signals)
        assert trace.values.shape == (240, len(trace.signals))
    assert run.faults == () and run.fault_free_s() == run.duration_s


def test_the_line_files_own_schedule_is_left_out(line: LineSpec):
    assert line.faults  # the default line wears its conveyor bearing after 300 s
    run = labelled_run(line, seed=1, duration_s=900, settle_s=0)
    assert run.faults == ()
    assert run.machines["conveyor"].column("vibration_mm_s").max() < 2.0


def test_intervals_match_the_injected_schedule(line: LineSpec):
    faults = [
        FaultSpec("pasteurizer", "sensor_drift", 0.5, 1200.0, 700.0),
        FaultSpec("capper", "stuck_sensor", 1.0, 1500.0, 100.0),
        FaultSpec("energy_meter", "voltage_sag", 0.3, 2500.0, 5000.0),  # beyond the run's end
    ]
    run = labelled_run(line, seed=2, duration_s=2000, faults=faults, settle_s=SETTLE_S)
    drift, stuck, sag = run.faults
    assert (drift.machine, drift.fault, drift.signal) == (
        "pasteurizer",
        "sensor_drift",
        "holding_temp_c",
    )
    assert (drift.start_s, drift.end_s, drift.severity, drift.gradual) == (
        1200.0,
        1900.0,
        0.5,
        True,
    )
    assert (stuck.signal, stuck.start_s, stuck.end_s, stuck.gradual) == (
        "cap_torque_nm",
        1500.0,
        1600.0,
        False,
    )
    assert (sag.start_s, sag.end_s) == (2500.0, run.times[-1])  # still active: ends with the run
    assert run.fault_free_s() == pytest.approx(
        run.duration_s - 700 - 400, abs=3
    )  # stuck lies inside drift


def test_faulted_signals_move(line: LineSpec):
    faults = [
        FaultSpec("pasteurizer", "sensor_drift", 1.0, 1000.0, 600.0),
        FaultSpec("filler", "stuck_sensor", 1.0, 1000.0, 300.0),
        FaultSpec("energy_meter", "voltage_sag", 1.0, 1000.0, 300.0),
    ]
    run = labelled_run(line, seed=3, duration_s=800, faults=faults, settle_s=SETTLE_S)
    before, during = run.times <= 1000.0, (run.times > 1000.0) & (run.times < 1300.0)
    holding = run.machines["pasteurizer"].column("holding_temp_c")
    assert holding[run.times == 1599.0][0] - holding[before].mean() > 10.0  # 10 % of 0..120 degC
    volume = run.machines["filler"].column("fill_volume_ml")
    assert np.ptp(volume[during]) == 0.0 and np.ptp(volume[before]) > 1.0
    volts = run.machines["energy_meter"].column("voltage_l1_v")
    assert volts[during].mean() < 0.85 * volts[before].mean()


def test_the_valve_of_a_pi_loop_on_a_noisy_sensor_moves_and_shows_fouling(line: LineSpec):
    """The PI loop acts on the measured temperature, as a real one: the valve is never flat
    (a detector can model it), and a fouled exchanger opens it far beyond its normal spread."""
    faults = [FaultSpec("pasteurizer", "hx_fouling", 0.3, 2000.0, 900.0)]
    run = labelled_run(line, seed=3, duration_s=2000, faults=faults, settle_s=SETTLE_S)
    valve = run.machines["pasteurizer"].column("steam_valve_pct")
    before, fouled = valve[run.times <= 2000.0], valve[run.times >= 2600.0]
    assert 0.02 < before.std() < 1.0 and np.unique(before).size == before.size
    assert fouled.mean() - before.mean() > 20 * before.std()
    (fouling,) = run.faults
    assert fouling.symptoms == ("steam_valve_pct", *SYMPTOMS["hx_fouling"])


def test_symptoms_are_signals_of_the_machines_the_fault_applies_to(line: LineSpec):
    for fault, extra in SYMPTOMS.items():
        machines = [m for m in line.machines.values() if m.kind in FAULT_KINDS[fault].main_signal]
        for machine in machines:
            assert set(extra) <= set(machine.signals), (fault, machine.kind)
    assert not {"stuck_sensor", "sensor_drift", "motor_overheat"} & set(SYMPTOMS)


def test_runs_hold_the_values_as_the_connectors_read_them(line: LineSpec):
    run = labelled_run(line, seed=4, duration_s=120, settle_s=600)
    current = run.machines["conveyor"].column("current_a")  # int16 register, scale 0.1
    np.testing.assert_array_equal(current, np.round(current / 0.1) * 0.1)
    power = run.machines["conveyor"].column("power_kw")  # float32 register
    np.testing.assert_array_equal(power, power.astype(np.float32))
    holding = run.machines["pasteurizer"].column("holding_temp_c")  # OPC UA: a double
    assert not np.array_equal(holding, holding.astype(np.float32))
    assert on_the_wire(line, "conveyor", "current_a", np.array([1e6]))[0] == 32767 * 0.1


def test_a_wrong_fault_fails_before_simulating(line: LineSpec):
    with pytest.raises(FaultError, match="does not apply"):
        labelled_run(
            line, seed=1, duration_s=1e6, faults=[FaultSpec("filler", "air_leak", 1, 10, 10)]
        )


def test_campaign_covers_every_fault_machine_and_severity_once(line: LineSpec):
    schedule, end = campaign_faults(line, seed=4, first_s=100.0, recovery_s=50.0)
    combos = {(f.machine, f.fault, f.severity) for f in schedule}
    expected = {
        (machine, name, severity)
        for name, kind in FAULT_KINDS.items()
        for machine, m in line.machines.items()
        if m.kind in kind.main_signal
        for severity in (0.3, 0.6, 1.0)
    }
    assert combos == expected and len(schedule) == len(expected)
    assert {f.fault for f in schedule} == set(FAULT_KINDS)
    for before, after in itertools.pairwise(schedule):
        assert after.start_s == before.start_s + before.duration_s + 50.0
    assert end == schedule[-1].start_s + schedule[-1].duration_s + 50.0
    other, _ = campaign_faults(line, seed=5, first_s=100.0, recovery_s=50.0)
    assert [f.fault for f in other] != [f.fault for f in schedule]  # order shuffled by seed


def test_a_campaign_run_schedules_every_fault_of_the_line(line: LineSpec):
    (run,) = standard_campaign(line, [7], severities=(1.0,), fault_free_s=3600.0, recovery_s=600)
    assert len(run.faults) == 13  # every (machine, fault) pair of the default line once
