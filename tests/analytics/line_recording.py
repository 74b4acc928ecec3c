"""The simulated line recorded as samples at 1 s, for the online-detection tests."""

from __future__ import annotations

from core.sample import Quality, Sample
from plc_sim.process import Simulator

T0 = 1_767_225_600  # 2026-01-01 00:00 UTC: sim second s is T0 + s

NS = 10**9
WARMUP_S, NORMAL_S, QUIET_S, FAULT_S, AFTER_S = 1800, 900, 60, 90, 120
MACHINE, FAULT, SIGNAL = "filler", "stuck_sensor", "fill_volume_ml"


def record(sim: Simulator, seconds: int) -> list[Sample]:
    """Step the line `seconds` times; every signal of every machine as samples."""
    spec, samples = sim.spec, []
    for _ in range(seconds):
        sim.step(1.0)
        ts = (T0 + round(sim.time_s)) * NS
        samples += [
            Sample(spec.line, machine, signal, value, Quality.GOOD, ts, site=spec.site)
            for (machine, signal), value in sim.values().items()
        ]
    return samples
