"""Labelled runs for scoring anomaly detection: the process model stepped faster than real time.

No sockets and no wall clock: `labelled_run` steps `Simulator` in a plain loop (a simulated day
takes a few seconds) and keeps every exposed signal of every machine on the `dt_s` grid, together
with the true fault intervals the simulator itself reported. `standard_campaign` plays every fault
of `FAULT_KINDS` on every machine it applies to at several severities, each followed by recovery
time, after a long fault-free stretch that the false-alarm rate is measured on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from plc_sim.faults import FAULT_KINDS, FaultEvent, check_fault
from plc_sim.process import Simulator
from plc_sim.registers import DTYPE_LIMITS
from plc_sim.spec import LineSpec

SEVERITIES = (0.3, 0.6, 1.0)
SETTLE_S = 3600.0  # cold start: six thermal time constants (600 s) of the motors to running heat
FAULT_FREE_S = 8 * 3600.0  # per seed: three held-back seeds give a simulated day without faults
RECOVERY_S = 1800.0  # after a fault: thermal time constants are 400-600 s
ABRUPT_HOLD_S = 300.0  # how long an abrupt fault lasts
GRADUAL_HOLD_S = 300.0  # how long a gradual fault stays at full severity after its ramp

# Besides its main signal, the signals a fault shows on by its own description in
# plc_sim.faults, which the process model implements directly (not through another machine or
# a slow after-effect): a flag naming one of these names the fault for a plant engineer.
# Sensor faults and motor_overheat show on their own signal only.
SYMPTOMS: dict[str, tuple[str, ...]] = {
    "bearing_wear": ("motor_temp_c",),  # "friction adds ... heat"
    "conveyor_jam": ("speed_hz", "torque_pct"),  # "the drive stalls at its current limit"
    "hx_fouling": ("hot_water_temp_c", "product_temp_c"),  # "to hold temperature, then cannot"
    "air_leak": ("pressure_bar",),  # the extra demand empties the receiver faster
    "voltage_sag": ("voltage_l2_v", "voltage_l3_v"),  # "phase voltages drop": all three
}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault to inject: `start_s` is simulation time since the simulator started."""

    machine: str
    fault: str
    severity: float
    start_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class FaultInterval:
    """A fault as it really happened: the ground truth a detector is scored against."""

    machine: str
    fault: str
    signal: str  # the signal it mainly shows on
    symptoms: tuple[str, ...]  # every signal it shows on (SYMPTOMS), the main one first
    severity: float
    start_s: float
    end_s: float
    gradual: bool


@dataclass(frozen=True, slots=True)
class MachineTrace:
    """One machine's signals on the run's time grid."""

    signals: tuple[str, ...]
    values: np.ndarray  # (N, S)

    def column(self, signal: str) -> np.ndarray:
        return self.values[:, self.signals.index(signal)]


@dataclass(frozen=True, slots=True)
class LabelledRun:
    """Every signal of a line on a regular grid plus the faults that were active when."""

    seed: int
    dt_s: float
    times: np.ndarray  # (N,) simulation seconds
    machines: dict[str, MachineTrace]
    faults: tuple[FaultInterval, ...]

    @property
    def duration_s(self) -> float:
        return float(len(self.times) * self.dt_s)

    def fault_free_s(self) -> float:
        """Time during which no fault was active on any machine."""
        active = np.zeros(len(self.times), dtype=bool)
        for f in self.faults:
            active |= (self.times > f.start_s) & (self.times <= f.end_s)
        return float((~active).sum() * self.dt_s)


def labelled_run(
    spec: LineSpec,
    *,
    seed: int,
    duration_s: float,
    dt_s: float = 1.0,
    faults: Sequence[FaultSpec] = (),
    settle_s: float = 0.0,
) -> LabelledRun:
    """Simulate `settle_s + duration_s` and keep the last `duration_s` of it, as read on the
    wire (`on_the_wire`).

    The line file's own fault schedule is replaced by `faults` (checked up front, so a wrong
    machine or fault fails before any simulation). Times are simulation seconds from the start,
    so the first kept sample is at `settle_s + dt_s`.
    """
    kinds = {name: m.kind for name, m in spec.machines.items()}
    for f in faults:
        check_fault(kinds, f.machine, f.fault, f.severity)
    sim = Simulator(spec.model_copy(update={"faults": [], "stops": []}), seed=seed)
    pending = sorted(faults, key=lambda f: f.start_s)
    keys = list(sim.values())
    n_settle, n_keep = round(settle_s / dt_s), round(duration_s / dt_s)
    grid = np.empty((n_keep, len(keys)))
    for i in range(n_settle + n_keep):
        while pending and pending[0].start_s <= sim.time_s:
            f = pending.pop(0)
            sim.inject(f.machine, f.fault, f.severity, f.duration_s)
        sim.step(dt_s)
        if i >= n_settle:
            values = sim.values()
            grid[i - n_settle] = [values[k] for k in keys]
    times = settle_s + dt_s * np.arange(1, n_keep + 1)
    for j, (machine, signal) in enumerate(keys):
        grid[:, j] = on_the_wire(spec, machine, signal, grid[:, j])
    return LabelledRun(
        seed, dt_s, times, _traces(keys, grid), _intervals(sim.drain_events(), times[-1])
    )


def on_the_wire(spec: LineSpec, machine: str, signal: str, values: np.ndarray) -> np.ndarray:
    """The values as a connector reads them: a Modbus register holds an integer count of its
    scale (rounded, saturated) or a float32. A detector trained on the exact values would take
    the resulting repeats (a 0.1 degC register over 0.1 degC of noise) for a stuck sensor."""
    where = spec.machines[machine].signals[signal].modbus
    values = np.asarray(values, dtype=float)
    if where is None or where.dtype is None or where.dtype == "bool":
        return values
    if where.dtype == "float32":
        return values.astype(np.float32).astype(float)
    low, high = DTYPE_LIMITS[where.dtype]
    return np.clip(np.round(values / where.scale), low, high) * where.scale


def _traces(keys: list[tuple[str, str]], grid: np.ndarray) -> dict[str, MachineTrace]:
    traces: dict[str, MachineTrace] = {}
    for machine in dict.fromkeys(m for m, _ in keys):
        columns = [i for i, (m, _) in enumerate(keys) if m == machine]
        signals = tuple(keys[i][1] for i in columns)
        traces[machine] = MachineTrace(signals, grid[:, columns].copy())
    return traces


def _intervals(events: Iterable[FaultEvent], end_s: float) -> tuple[FaultInterval, ...]:
    """Pair each start event with its end (a fault still active ends with the run)."""
    open_: dict[tuple[str, str], FaultEvent] = {}
    intervals: list[FaultInterval] = []
    for event in events:
        key = (event.machine, event.fault)
        if event.active:
            open_[key] = event
            continue
        start = open_.pop(key)
        intervals.append(_interval(start, event.time_s))
    intervals += [_interval(start, end_s) for start in open_.values()]
    return tuple(sorted(intervals, key=lambda f: (f.start_s, f.machine)))


def _interval(start: FaultEvent, end_s: float) -> FaultInterval:
    gradual = FAULT_KINDS[start.fault].ramp_s > 0
    symptoms = (start.signal, *SYMPTOMS.get(start.fault, ()))
    return FaultInterval(
        start.machine,
        start.fault,
        start.signal,
        symptoms,
        start.severity,
        start.time_s,
        end_s,
        gradual,
    )


def campaign_faults(
    spec: LineSpec,
    seed: int,
    *,
    severities: Sequence[float] = SEVERITIES,
    first_s: float = SETTLE_S + FAULT_FREE_S,
    recovery_s: float = RECOVERY_S,
) -> tuple[list[FaultSpec], float]:
    """Every applicable (machine, fault, severity) once, in an order shuffled by the seed.

    Returns the schedule and the simulation time at which its last recovery ends.
    """
    combos = [
        (machine, name, severity)
        for name, kind in FAULT_KINDS.items()
        for machine, m in spec.machines.items()
        if m.kind in kind.main_signal
        for severity in severities
    ]
    order = np.random.default_rng([seed, zlib.crc32(b"campaign")]).permutation(len(combos))
    schedule, at = [], first_s
    for index in order:
        machine, name, severity = combos[index]
        duration = FAULT_KINDS[name].ramp_s + (GRADUAL_HOLD_S if FAULT_KINDS[name].ramp_s else 0)
        duration = duration or ABRUPT_HOLD_S
        schedule.append(FaultSpec(machine, name, severity, at, duration))
        at += duration + recovery_s
    return schedule, at


def standard_campaign(
    spec: LineSpec,
    seeds: Iterable[int],
    *,
    severities: Sequence[float] = SEVERITIES,
    fault_free_s: float = FAULT_FREE_S,
    recovery_s: float = RECOVERY_S,
    dt_s: float = 1.0,
    settle_s: float = SETTLE_S,
) -> list[LabelledRun]:
    """One run per seed: settle, `fault_free_s` without faults, then every fault with recovery."""
    runs = []
    for seed in seeds:
        schedule, end = campaign_faults(
            spec,
            seed,
            severities=severities,
            first_s=settle_s + fault_free_s,
            recovery_s=recovery_s,
        )
        runs.append(
            labelled_run(
                spec,
                seed=seed,
                duration_s=end - settle_s,
                dt_s=dt_s,
                faults=schedule,
                settle_s=settle_s,
            )
        )
    return runs
