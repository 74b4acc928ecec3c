"""The fault catalogue and the book of active faults.

Each fault kind says which machine kinds it applies to and the signal it mainly shows on: that is
the ground truth a detector is scored against. Process faults are read by the machine models
(`FaultBook.level`); sensor faults act on the measurement path only (the process is unaffected).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum


class FaultError(ValueError):
    """A fault request that cannot be honoured (unknown fault or machine, bad severity)."""


class Direction(IntEnum):
    """How a fault moves its main signal."""

    FALLS = -1
    FREEZES = 0
    RISES = 1


@dataclass(frozen=True, slots=True)
class FaultKind:
    """One kind of fault. `ramp_s` 0 means abrupt; else severity is reached after `ramp_s`."""

    name: str
    description: str
    main_signal: dict[str, str]  # machine kind -> the signal it mainly shows on
    direction: Direction
    ramp_s: float = 0.0
    sensor: bool = False  # True: acts on the measurement, not on the process


FAULT_KINDS: dict[str, FaultKind] = {
    fault.name: fault
    for fault in (
        FaultKind(
            "bearing_wear",
            "worn motor bearing: vibration grows, friction adds load and heat",
            {"conveyor": "vibration_mm_s", "air_compressor": "vibration_mm_s"},
            Direction.RISES,
            ramp_s=300.0,
        ),
        FaultKind(
            "motor_overheat",
            "clogged motor cooling: winding temperature climbs at the same load",
            {"conveyor": "motor_temp_c", "air_compressor": "motor_temp_c"},
            Direction.RISES,
            ramp_s=120.0,
        ),
        FaultKind(
            "conveyor_jam",
            "jammed belt: the drive stalls at its current limit, the filler starves",
            {"conveyor": "current_a"},
            Direction.RISES,
        ),
        FaultKind(
            "hx_fouling",
            "fouled heat exchanger: the valve opens further to hold temperature, then cannot",
            {"pasteurizer": "steam_valve_pct"},
            Direction.RISES,
            ramp_s=600.0,
        ),
        FaultKind(
            "sensor_drift",
            "drifting temperature sensor: the reading creeps up, the process does not",
            {"pasteurizer": "holding_temp_c", "air_compressor": "discharge_temp_c"},
            Direction.RISES,
            ramp_s=600.0,
            sensor=True,
        ),
        FaultKind(
            "stuck_sensor",
            "stuck sensor: the reading freezes at its last value",
            {
                "pasteurizer": "holding_temp_c",
                "filler": "fill_volume_ml",
                "capper": "cap_torque_nm",
            },
            Direction.FREEZES,
            sensor=True,
        ),
        FaultKind(
            "air_leak",
            "compressed-air leak: extra demand, the compressor loads longer",
            {"air_compressor": "load_pct"},
            Direction.RISES,
        ),
        FaultKind(
            "voltage_sag",
            "supply voltage sag: phase voltages drop, currents rise for the same power",
            {"energy_meter": "voltage_l1_v"},
            Direction.FALLS,
        ),
    )
}

# How far a fully developed sensor drift moves a reading, as a share of the signal's range.
DRIFT_SHARE_OF_RANGE = 0.1


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """Start or end of a fault: the ground truth written to the `events` measurement."""

    machine: str
    fault: str
    active: bool
    time_s: float  # simulation time
    signal: str  # the signal the fault mainly shows on
    severity: float
    text: str


@dataclass(slots=True)
class ActiveFault:
    kind: FaultKind
    severity: float
    start_s: float
    end_s: float | None

    def level(self, now_s: float) -> float:
        """Effective severity now: gradual faults ramp up from their start."""
        if self.kind.ramp_s <= 0.0:
            return self.severity
        return self.severity * min(1.0, max(0.0, now_s - self.start_s) / self.kind.ramp_s)


def check_fault(
    machine_kinds: Mapping[str, str], machine: str, fault: str, severity: float
) -> FaultKind:
    """The fault kind, or a FaultError saying what is wrong and what would be right."""
    kind = FAULT_KINDS.get(fault)
    if kind is None:
        raise FaultError(f"unknown fault {fault!r}; known faults: {', '.join(FAULT_KINDS)}")
    machine_kind = machine_kinds.get(machine)
    if machine_kind is None:
        raise FaultError(f"unknown machine {machine!r}; machines: {', '.join(machine_kinds)}")
    if machine_kind not in kind.main_signal:
        on = ", ".join(m for m, k in machine_kinds.items() if k in kind.main_signal)
        raise FaultError(
            f"fault {fault!r} does not apply to {machine!r} (a {machine_kind}); "
            f"it applies to: {on or 'no machine of this line'}"
        )
    if not 0.0 < severity <= 1.0:
        raise FaultError(f"severity must be in (0, 1], got {severity}")
    return kind


class FaultBook:
    """Which faults are active on which machine; records start and end events."""

    def __init__(self, machine_kinds: dict[str, str]) -> None:
        self._kinds = machine_kinds
        self._active: dict[str, dict[str, ActiveFault]] = {m: {} for m in machine_kinds}
        self._events: list[FaultEvent] = []

    def inject(
        self, machine: str, fault: str, severity: float, duration_s: float | None, now_s: float
    ) -> None:
        """Start a fault (restarting it if active); None or <= 0 duration lasts until cleared."""
        kind = check_fault(self._kinds, machine, fault, severity)
        self.clear(machine, fault, now_s)
        end = now_s + duration_s if duration_s is not None and duration_s > 0 else None
        self._active[machine][fault] = ActiveFault(kind, severity, now_s, end)
        self._record(machine, kind, True, severity, now_s)

    def clear(self, machine: str, fault: str, now_s: float) -> None:
        """End a fault if it is active."""
        active = self._active.get(machine, {}).pop(fault, None)
        if active is not None:
            self._record(machine, active.kind, False, active.severity, now_s)

    def expire(self, now_s: float) -> None:
        """End the faults whose duration has run out."""
        for machine, faults in self._active.items():
            for name in [n for n, f in faults.items() if f.end_s is not None and f.end_s <= now_s]:
                self.clear(machine, name, now_s)

    def level(self, machine: str, fault: str, now_s: float) -> float:
        """Effective severity of a fault on a machine now; 0.0 when not active."""
        active = self._active[machine].get(fault)
        return 0.0 if active is None else active.level(now_s)

    def active(self, machine: str) -> dict[str, ActiveFault]:
        return self._active[machine]

    def drain(self) -> list[FaultEvent]:
        events, self._events = self._events, []
        return events

    def _record(
        self, machine: str, kind: FaultKind, active: bool, severity: float, now_s: float
    ) -> None:
        signal = kind.main_signal[self._kinds[machine]]
        verb = "started" if active else "ended"
        text = f"{kind.name} {verb} on {machine} (severity {severity:.2f}): {kind.description}"
        self._events.append(FaultEvent(machine, kind.name, active, now_s, signal, severity, text))
