"""The process model: determinism, speed, physics sanity and every fault's signature."""

from __future__ import annotations

import itertools
import statistics
import time

import pytest

from plc_sim.faults import FAULT_KINDS, Direction, FaultError
from plc_sim.machines import MachineState, SignalKind
from plc_sim.process import Simulator
from plc_sim.spec import LineSpec

WARM_UP_S = 600.0  # the pasteurizer heats up and the line reaches steady production


def quiet(line: LineSpec) -> LineSpec:
    """The default line without its scheduled fault."""
    return line.model_copy(update={"faults": [], "stops": []})


def run(sim: Simulator, seconds: float, dt: float = 1.0) -> list[dict[tuple[str, str], float]]:
    samples = []
    for _ in range(int(seconds / dt)):
        sim.step(dt)
        samples.append(sim.values())
    return samples


def series(samples: list[dict[tuple[str, str], float]], machine: str, signal: str) -> list[float]:
    return [s[(machine, signal)] for s in samples]


def test_same_seed_same_run_other_seed_other_run(line: LineSpec):
    a, b, c = Simulator(line, seed=7), Simulator(line, seed=7), Simulator(line, seed=8)
    for sim in (a, b, c):
        run(sim, 400)
    assert a.values() == b.values()
    assert a.states() == b.states()
    assert a.values() != c.values()


def test_one_step_of_the_line_is_well_under_a_millisecond(line: LineSpec):
    sim = Simulator(line, seed=1)
    start = time.perf_counter()
    for _ in range(2000):
        sim.step(1.0)
    per_step = (time.perf_counter() - start) / 2000
    assert per_step < 0.5e-3


def test_pasteurizer_pid_settles_at_setpoint(line: LineSpec):
    sim = Simulator(quiet(line), seed=3)
    samples = run(sim, 900)
    setpoint = line.machines["pasteurizer"].params.setpoint_c  # type: ignore[attr-defined]
    temps = series(samples[-120:], "pasteurizer", "product_temp_c")
    assert abs(statistics.fmean(temps) - setpoint) < 0.2
    assert max(abs(t - setpoint) for t in temps) < 0.5
    assert series(samples, "pasteurizer", "product_temp_c")[0] < 40  # it started cold
    assert sim.states()["pasteurizer"] == MachineState.RUNNING
    assert 20 < samples[-1][("pasteurizer", "steam_valve_pct")] < 95


def test_counters_only_go_up(line: LineSpec):
    sim = Simulator(line, seed=4)  # with the default schedule's fault in the middle
    samples = run(sim, 3 * 3600, dt=2.0)
    counters = [
        (machine, signal)
        for machine, m in line.machines.items()
        for signal in m.signals
        if line.signal_kind(machine, signal) in (SignalKind.TOTAL, SignalKind.COUNT)
    ]
    assert len(counters) >= 6
    for key in counters:
        values = series(samples, *key)
        assert all(b >= a for a, b in itertools.pairwise(values)), key
        assert values[-1] > values[0], key
    filled = samples[-1][("filler", "bottles_filled_total")]
    assert filled == int(filled) and 3 * 3600 * 1.5 < filled < 3 * 3600 * 2.0  # ~120/min


def _with_params(line: LineSpec, machine: str, **params: float) -> LineSpec:
    spec = quiet(line)
    m = spec.machines[machine]
    updated = m.model_copy(update={"params": m.params.model_copy(update=params)})
    return spec.model_copy(update={"machines": {**spec.machines, machine: updated}})


def test_conveyor_current_rises_with_load_and_speed(line: LineSpec):
    def mean_current(spec: LineSpec) -> float:
        samples = run(Simulator(spec, seed=5), 300)
        return statistics.fmean(series(samples[-120:], "conveyor", "current_a"))

    light = mean_current(_with_params(line, "conveyor", belt_load_kg=40))
    heavy = mean_current(_with_params(line, "conveyor", belt_load_kg=180))
    slow = mean_current(_with_params(line, "conveyor", belt_load_kg=180, speed_setpoint_hz=25))
    assert heavy > light * 1.5
    assert slow < heavy * 0.7


def test_compressor_cycles_between_its_limits(line: LineSpec):
    samples = run(Simulator(quiet(line), seed=6), 900)
    pressure = series(samples[-600:], "air_compressor", "pressure_bar")
    assert 6.2 < min(pressure) < 6.7 and 7.3 < max(pressure) < 7.8
    states = {s[("air_compressor", "state")] for s in samples[-600:]}
    assert states == {MachineState.IDLE, MachineState.RUNNING}  # unloaded and loaded phases


def test_energy_meter_sums_the_loads(line: LineSpec):
    sim = Simulator(quiet(line), seed=6)
    run(sim, WARM_UP_S)
    values = sim.values()
    running_kw = values[("energy_meter", "power_kw")]
    sim.set_running("conveyor", False)
    sim.set_running("air_compressor", False)
    run(sim, 120)
    stopped = sim.values()
    assert stopped[("energy_meter", "power_kw")] < running_kw - 5
    assert stopped[("energy_meter", "current_l1_a")] < values[("energy_meter", "current_l1_a")]
    v = values[("energy_meter", "voltage_l1_v")]
    assert 220 < v < 240


def test_filler_starves_when_the_conveyor_stops(line: LineSpec):
    sim = Simulator(quiet(line), seed=2)
    run(sim, WARM_UP_S)
    assert sim.states()["filler"] == MachineState.RUNNING
    sim.set_running("conveyor", False)
    samples = run(sim, 60)
    assert sim.states()["conveyor"] == MachineState.STOPPED
    assert sim.states()["filler"] == MachineState.IDLE
    assert samples[-1][("conveyor", "speed_hz")] < 1.0
    assert samples[-1][("filler", "fill_rate_bpm")] < 5.0


# fault, machine, seconds to run after injecting it
FAULT_CASES = [
    ("bearing_wear", "conveyor", 600),
    ("bearing_wear", "air_compressor", 600),
    ("motor_overheat", "conveyor", 900),
    ("motor_overheat", "air_compressor", 900),
    ("conveyor_jam", "conveyor", 60),
    ("hx_fouling", "pasteurizer", 900),
    ("sensor_drift", "pasteurizer", 900),
    ("sensor_drift", "air_compressor", 900),
    ("stuck_sensor", "filler", 120),
    ("stuck_sensor", "capper", 120),
    ("stuck_sensor", "pasteurizer", 120),
    ("air_leak", "air_compressor", 900),
    ("voltage_sag", "energy_meter", 60),
]


def test_the_cases_cover_every_fault():
    assert {fault for fault, _, _ in FAULT_CASES} == set(FAULT_KINDS)


@pytest.mark.parametrize(("fault", "machine", "seconds"), FAULT_CASES)
def test_fault_moves_its_main_signal(fault: str, machine: str, seconds: float, line: LineSpec):
    kind = FAULT_KINDS[fault]
    signal = kind.main_signal[line.machines[machine].kind]
    healthy, faulty = Simulator(quiet(line), seed=11), Simulator(quiet(line), seed=11)
    run(healthy, WARM_UP_S)
    run(faulty, WARM_UP_S)
    faulty.inject(machine, fault)
    window = int(min(seconds, 120))
    before = series(run(healthy, seconds)[-window:], machine, signal)
    after = series(run(faulty, seconds)[-window:], machine, signal)
    span = line.machines[machine].signals[signal].max - line.machines[machine].signals[signal].min
    shift = statistics.fmean(after) - statistics.fmean(before)
    if kind.direction is Direction.RISES:
        assert shift > 0.04 * span
    elif kind.direction is Direction.FALLS:
        assert shift < -0.04 * span
    else:
        assert statistics.pstdev(before) > 0
        assert statistics.pstdev(after) == 0


def test_fault_events_have_start_and_end(line: LineSpec):
    sim = Simulator(quiet(line), seed=1)
    run(sim, 10)
    sim.inject("conveyor", "conveyor_jam", severity=0.5, duration_s=30)
    sim.inject("energy_meter", "voltage_sag")
    run(sim, 40)
    sim.clear("energy_meter", "voltage_sag")
    events = sim.drain_events()
    assert [(e.machine, e.fault, e.active) for e in events] == [
        ("conveyor", "conveyor_jam", True),
        ("energy_meter", "voltage_sag", True),
        ("conveyor", "conveyor_jam", False),
        ("energy_meter", "voltage_sag", False),
    ]
    start, end = events[0], events[2]
    assert start.time_s == pytest.approx(10) and end.time_s == pytest.approx(40)
    assert start.signal == "current_a" and start.severity == 0.5
    assert "conveyor_jam started on conveyor" in start.text
    assert sim.drain_events() == []


def test_scheduled_fault_plays_by_itself(line: LineSpec):
    sim = Simulator(line, seed=1)  # bearing_wear on the conveyor at 300 s for 600 s
    run(sim, 1000)
    events = sim.drain_events()
    assert [(e.fault, e.active, round(e.time_s)) for e in events] == [
        ("bearing_wear", True, 300),
        ("bearing_wear", False, 900),
    ]


@pytest.mark.parametrize(
    ("machine", "fault", "severity", "expected"),
    [
        ("conveyor", "gremlins", 1.0, "unknown fault"),
        ("robot", "conveyor_jam", 1.0, "unknown machine"),
        ("filler", "conveyor_jam", 1.0, "does not apply to 'filler'"),
        ("conveyor", "conveyor_jam", 0.0, "severity"),
    ],
)
def test_bad_fault_requests_are_refused(
    machine: str, fault: str, severity: float, expected: str, line: LineSpec
):
    sim = Simulator(line, seed=1)
    with pytest.raises(FaultError, match=expected):
        sim.inject(machine, fault, severity)
    assert sim.drain_events() == []
