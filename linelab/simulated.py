"""Telemetry of the simulated line without sockets, as the connectors would read it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analytics.windows import MachineTelemetry
from plc_sim.process import WARMUP_S, Simulator
from plc_sim.scenarios import on_the_wire
from plc_sim.spec import load_line


def simulated_telemetry(
    duration_s: float, *, seed: int, line: Path | None = None, warmup_s: float = WARMUP_S
) -> dict[str, MachineTelemetry]:
    """A fresh fault-free run of the line's process model (no sockets), per machine, as the
    connectors read it (Modbus registers round); the scheduled faults and stops of the line
    file are left out, and it starts at running heat (Simulator.warm_up)."""
    spec = load_line(line).model_copy(update={"faults": [], "stops": []})
    sim = Simulator(spec, seed=seed)
    sim.warm_up(warmup_s)
    machines = {name: MachineTelemetry(spec.site, spec.line, name) for name in spec.machines}
    for _ in range(round(duration_s / spec.tick_s)):
        sim.step(spec.tick_s)
        for (machine, signal), value in sim.values().items():
            found = machines[machine]
            found.times_s.append(sim.time_s)
            found.signals.append(signal)
            found.values.append(value)
    for found in machines.values():  # as the connectors will read them when detecting
        names, values = np.array(found.signals), np.array(found.values)
        for signal in set(found.signals):
            mine = names == signal
            values[mine] = on_the_wire(spec, found.machine, signal, values[mine])
        found.values = values.tolist()
    return machines
