"""Modbus benchmark: coalesced reads against one request per tag, from one connector process.

Run: .venv/bin/python bench/bench_modbus.py [--copies N] [--seconds S]
The simulator's Modbus server (pymodbus) serves N copies of the default line's Modbus machines
in a process of its own; this process runs one ModbusInput polling as fast as it can
(poll_interval_s 0.001) with a counter as its emit, first with the reads planned as
`shopfloor up` configures them (max_gap 16), then with every tag in a device entry of its own,
which makes one request per tag. "Register values" are the registers and bits the responses
carried (a coalesced read also carries the holes between tags); CPU-seconds are this process's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from linefiles import write_line
from measure import Elapsed, Stopwatch, machine_description
from processes import HOST, child, free_port, run_main, wait_listening

from connectors.config import parse_config
from connectors.modbus import ModbusInput
from core.sample import Sample
from plc_sim.spec import LineSpec
from shopfloor.simconfig import SIM_MAX_GAP, sim_connectors

POLL_INTERVAL_S = 0.001
WARMUP_S = 1.0
SERVER_START_S = 30.0


@dataclass
class Counter:
    """The emit of the measured input: counts batches (one per poll cycle) and samples."""

    batches: int = 0
    samples: int = 0

    async def emit(self, samples: Sequence[Sample]) -> None:
        self.batches += 1
        self.samples += len(samples)


@dataclass(frozen=True)
class Result:
    title: str
    source: ModbusInput
    cycles: int
    samples: int
    elapsed: Elapsed

    @property
    def sample_rates(self) -> tuple[float, float]:
        """Samples per wall second and per CPU-second."""
        return self.samples / self.elapsed.wall_s, self.samples / self.elapsed.cpu_s

    def report(self) -> None:
        requests = self.source.requests
        per_cycle = sum(r.count for r in requests)
        in_tags = sum(p.tag.width for r in requests for p in r.tags)
        print(
            f"{self.title}: {len(requests)} requests, {self.samples // max(self.cycles, 1)} tags,"
            f" {per_cycle:,} register values per cycle ({in_tags:,} of them in tags)"
        )
        e = self.elapsed
        print(f"  requests:        {e.rates(self.cycles * len(requests))}")
        print(f"  samples:         {e.rates(self.samples)}")
        print(f"  register values: {e.rates(self.cycles * per_cycle)}")
        print(
            f"  {self.cycles:,} cycles in {e.wall_s:.1f} s, connector at {e.core_share:.0%} of a"
            f" core, {self.source.stats.errors} errors"
        )


def connectors_file(spec: LineSpec, port: int, *, per_tag: bool) -> dict[str, Any]:
    """The Modbus entry `shopfloor up` would run, polling flat out; `per_tag` splits every
    device into one entry per tag, so that no two tags share a request."""
    generated = sim_connectors(spec, HOST, opcua_port=1, modbus_port=port)
    entry = next(c for c in generated["connectors"] if c["type"] == "modbus")
    entry["poll_interval_s"] = POLL_INTERVAL_S
    if per_tag:
        entry["devices"] = [
            {**device, "tags": [tag]} for device in entry["devices"] for tag in device["tags"]
        ]
    return {**generated, "connectors": [entry]}


def modbus_input(spec: LineSpec, port: int, *, per_tag: bool) -> ModbusInput:
    text = yaml.safe_dump(connectors_file(spec, port, per_tag=per_tag))
    (source,) = parse_config(text, Path("<bench connectors>")).build_inputs()
    assert isinstance(source, ModbusInput)
    tags = sum(len(request.tags) for request in source.requests)
    if per_tag and len(source.requests) != tags:
        raise RuntimeError(f"{len(source.requests)} requests for {tags} tags, expected one each")
    return source


async def measure(title: str, source: ModbusInput, seconds: float) -> Result:
    """Poll for a warm-up, then count what `seconds` more bring."""
    counter = Counter()
    task = asyncio.create_task(source.run(counter.emit))
    try:
        await asyncio.sleep(WARMUP_S)
        if not source.stats.connected:
            raise RuntimeError(f"no connection to the simulator: {source.stats.last_error}")
        batches, samples, watch = counter.batches, counter.samples, Stopwatch()
        await asyncio.sleep(seconds)
        elapsed = watch.elapsed()
        return Result(title, source, counter.batches - batches, counter.samples - samples, elapsed)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of the default line")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case")
    args = parser.parse_args(argv)
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp:
        path, spec = write_line(Path(tmp), line="bench", copies=args.copies, tick_s=1.0)
        port = free_port()
        server = [sys.executable, "-m", "plc_sim", "--line", str(path)]
        with child([*server, "--opcua-port", "0", "--modbus-port", str(port)]) as process:
            wait_listening(process, port, SERVER_START_S)
            devices = sum(m.protocol == "modbus" for m in spec.machines.values())
            print(f"simulator: {devices} Modbus devices ({args.copies} copies of the default line)")
            coalesced = asyncio.run(
                measure(
                    f"(a) coalesced, max_gap {SIM_MAX_GAP}",
                    modbus_input(spec, port, per_tag=False),
                    args.seconds,
                )
            )
            coalesced.report()
            per_tag = asyncio.run(
                measure(
                    "(b) one request per tag", modbus_input(spec, port, per_tag=True), args.seconds
                )
            )
            per_tag.report()
    wall, cpu = (c / t for c, t in zip(coalesced.sample_rates, per_tag.sample_rates, strict=True))
    print(f"coalescing speed-up: {wall:.1f}x samples per wall second, {cpu:.1f}x per CPU-second")
    return 0


if __name__ == "__main__":
    run_main(main)
