"""The simulated line: steps every machine model and measures the signals the line file exposes.

Pure and deterministic: the only randomness is numpy Generators seeded from (seed, machine name),
so a seed reproduces a run and adding a machine does not change the others. No wall clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from plc_sim.faults import (
    DRIFT_SHARE_OF_RANGE,
    FAULT_KINDS,
    FaultBook,
    FaultError,
    FaultEvent,
)
from plc_sim.machines import (
    MACHINE_TYPES,
    PLANNED_STOPS,
    Machine,
    MachineState,
    SignalKind,
    StopReason,
)
from plc_sim.spec import LineSpec

# A simulated line starts cold; motors need ~6 time constants (600 s) to run hot: how long
# Simulator.warm_up runs before a run that a detector trained on steady running will score.
WARMUP_S = 3600.0


@dataclass(frozen=True, slots=True)
class _Probe:
    """How one exposed signal is measured."""

    key: tuple[str, str]
    signal: str
    kind: SignalKind
    noise: float
    low: float
    high: float


class Simulator:
    """The model factory: `step` it, read `values`, inject and clear faults."""

    def __init__(self, spec: LineSpec, seed: int = 0) -> None:
        self.spec = spec
        self._time = 0.0
        self._faults = FaultBook({name: m.kind for name, m in spec.machines.items()})
        self._schedule = sorted(spec.faults, key=lambda f: f.at_s)
        self._stops = sorted(spec.stops, key=lambda s: s.at_s)
        self._holds: dict[str, float] = {}  # machine -> when its planned stop ends
        self._machines: dict[str, Machine] = {}
        for name, m in spec.machines.items():
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            self._machines[name] = MACHINE_TYPES[m.kind](name, m.params, self._faults, rng)
        for machine in self._machines.values():
            machine.link(self._machines)
        rank = {kind: i for i, kind in enumerate(MACHINE_TYPES)}
        self._order = sorted(self._machines.values(), key=lambda m: rank[m.kind])
        self._probes = {
            name: [
                _Probe((name, sig), sig, spec.signal_kind(name, sig), s.noise, s.min, s.max)
                for sig, s in m.signals.items()
            ]
            for name, m in spec.machines.items()
        }
        self._stuck: dict[tuple[str, str], float] = {}
        self._values: dict[tuple[str, str], float] = {}
        self._advance(0.0, 0.0)  # a zero step settles every output at its initial state

    @property
    def time_s(self) -> float:
        """Simulation time in seconds since the start."""
        return self._time

    def step(self, dt_s: float) -> None:
        """Advance the line by `dt_s` seconds: faults due, process, measurement."""
        if not dt_s > 0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        self._time += dt_s
        now = self._time
        while self._schedule and self._schedule[0].at_s <= now:
            item = self._schedule.pop(0)
            self._faults.inject(item.machine, item.fault, item.severity, item.duration_s, now)
        self._faults.expire(now)
        self._follow_stops(now)
        self._advance(dt_s, now)

    def _follow_stops(self, now: float) -> None:
        """Planned stops due start (the machine is held with their reason); ended ones end."""
        while self._stops and self._stops[0].at_s <= now:
            item = self._stops.pop(0)
            self.hold(item.machine, item.reason, item.duration_s)
        for name in [n for n, end in self._holds.items() if end <= now]:
            del self._holds[name]
            self._machines[name].held = StopReason.NONE

    def hold(self, machine: str, reason: str, duration_s: float) -> None:
        """Start a planned stop now (cleaning, changeover, maintenance) for `duration_s`: the
        machine stands idle with that reason code, then runs again."""
        target = self._machines.get(machine)
        planned = {r.name.lower(): r for r in PLANNED_STOPS}
        if target is None or reason not in planned:
            raise FaultError(
                f"cannot hold {machine!r} for {reason!r}: machines are {', '.join(self._machines)}"
                f"; planned stops are {', '.join(planned)}"
            )
        target.held = planned[reason]
        self._holds[machine] = self._time + duration_s

    def warm_up(self, duration_s: float) -> None:
        """Run the process for `duration_s` before time zero, as if the line had been running
        when the simulation starts: motors and heaters reach their running heat, so a detector
        trained on steady running does not flag a cold start. No fault happens meanwhile; the
        clock and the fault schedule still start at zero."""
        dt_s = self.spec.tick_s
        for _ in range(round(duration_s / dt_s)):
            self._advance(dt_s, 0.0)

    def _advance(self, dt_s: float, now: float) -> None:
        """Every machine's process by `dt_s`, in dependency order, then its measurement."""
        for machine in self._order:
            machine.advance(dt_s, now)
            self._measure(machine)

    def values(self) -> dict[tuple[str, str], float]:
        """(machine, signal) -> measured engineering value of every signal the file exposes."""
        return dict(self._values)

    def states(self) -> dict[str, MachineState]:
        return {name: m.state for name, m in self._machines.items()}

    def inject(
        self, machine: str, fault: str, severity: float = 1.0, duration_s: float | None = None
    ) -> None:
        """Start a fault now; FaultError if it is unknown or does not fit the machine."""
        self._faults.inject(machine, fault, severity, duration_s, self._time)

    def clear(self, machine: str, fault: str) -> None:
        """End a fault now if it is active; FaultError if machine or fault is unknown."""
        if machine not in self._machines or fault not in FAULT_KINDS:
            raise FaultError(f"no fault {fault!r} on a machine {machine!r} of this line")
        self._faults.clear(machine, fault, self._time)

    def set_running(self, machine: str, run: bool) -> None:
        """The run/stop command (what writing a run coil does); FaultError if there is none."""
        target = self._machines.get(machine)
        if target is None or "run_cmd" not in target.SIGNALS:
            raise FaultError(f"{machine!r} is not a machine with a run/stop command")
        target.run_cmd = run

    def drain_events(self) -> list[FaultEvent]:
        """Fault starts and ends since the last call, oldest first."""
        return self._faults.drain()

    def _measure(self, machine: Machine) -> None:
        """Sensor noise, sensor faults and range clamping between the process and the wire."""
        probes = self._probes[machine.name]
        noise = machine.rng.standard_normal(len(probes)).tolist()
        sensor_faults = {
            fault.kind.main_signal[machine.kind]: (name, fault.level(self._time))
            for name, fault in self._faults.active(machine.name).items()
            if fault.kind.sensor
        }
        out, values = machine.out, self._values
        for probe, z in zip(probes, noise, strict=True):
            value = out[probe.signal]
            if probe.kind is SignalKind.ANALOG:
                value += probe.noise * z
                fault = sensor_faults.get(probe.signal)
                if fault is not None:
                    value = self._sensor_fault(probe, value, *fault)
                else:
                    self._stuck.pop(probe.key, None)
                value = min(probe.high, max(probe.low, value))
            values[probe.key] = value
            machine.measured[probe.signal] = value

    def _sensor_fault(self, probe: _Probe, value: float, fault: str, level: float) -> float:
        if fault == "stuck_sensor":
            return self._stuck.setdefault(probe.key, value)
        return value + level * DRIFT_SHARE_OF_RANGE * (probe.high - probe.low)
