"""OPC UA benchmark: notifications/s one connector process ingests from several servers.

Run: .venv/bin/python bench/bench_opcua.py [--servers K] [--copies N] [--seconds S]
One asyncua server process tops out at a few thousand notifications/s, so K simulator processes
each serve N copies of the default line with every machine on OPC UA, ticking every 0.1 s. This
process runs one OpcUaInput per server (subscribe mode, as `shopfloor up` configures it) with a
counter as emit, and counts the samples (one per data-change notification) after a warm-up.
CPU-seconds are this process's; the servers' CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from linefiles import write_line
from measure import Elapsed, Stopwatch, machine_description
from processes import HOST, child, free_port, wait_listening

from connectors.base import Input
from connectors.config import parse_config
from historian.sample import Sample
from plc_sim.spec import LineSpec
from shopfloor.simconfig import sim_connectors

TICK_S = 0.1
WARMUP_S = 3.0
CONNECT_TIMEOUT_S = 30.0
SERVER_START_S = 60.0


class Counter:
    """The emit of every measured input."""

    def __init__(self) -> None:
        self.samples = 0

    async def emit(self, samples: Sequence[Sample]) -> None:
        self.samples += len(samples)


def opcua_inputs(lines: Sequence[tuple[LineSpec, int]]) -> list[Input]:
    """One OPC UA connector entry per (line, port), as `shopfloor up` would generate it."""
    entries = []
    for spec, port in lines:
        generated = sim_connectors(spec, HOST, opcua_port=port, modbus_port=1)
        entries += [c for c in generated["connectors"] if c["type"] == "opcua"]
    text = yaml.safe_dump({"site": "bench", "line": "bench", "connectors": entries})
    return parse_config(text, Path("<bench connectors>")).build_inputs()


async def measure(inputs: Sequence[Input], seconds: float) -> tuple[int, Elapsed]:
    """Connect every input, warm up, then count the samples of `seconds`."""
    counter = Counter()
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(source.run(counter.emit)) for source in inputs]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while not all(source.stats.connected for source in inputs):
                    await asyncio.sleep(0.1)
            await asyncio.sleep(WARMUP_S)
            before, watch = counter.samples, Stopwatch()
            await asyncio.sleep(seconds)
            return counter.samples - before, watch.elapsed()
        finally:
            for task in running:
                task.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3, help="simulator processes")
    parser.add_argument("--copies", type=int, default=10, help="copies of the line per server")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time")
    args = parser.parse_args(argv)
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        lines = []
        for number in range(1, args.servers + 1):
            path, spec = write_line(
                Path(tmp), line=f"bench{number}", copies=args.copies, tick_s=TICK_S, only="opcua"
            )
            port = free_port()
            server = [sys.executable, "-m", "plc_sim", "--line", str(path), "--modbus-port", "0"]
            lines.append((spec, port, stack.enter_context(child([*server, "--opcua-port", str(port)]))))
        for _, port, process in lines:
            wait_listening(process, port, SERVER_START_S)
        inputs = opcua_inputs([(spec, port) for spec, port, _ in lines])
        variables = sum(len(m.signals) for spec, _, _ in lines for m in spec.machines.values())
        print(
            f"{args.servers} simulator processes, {variables:,} OPC UA variables in all, "
            f"tick {TICK_S} s; 1 connector process, {len(inputs)} subscriptions"
        )
        count, elapsed = asyncio.run(measure(inputs, args.seconds))
    print(f"notifications: {elapsed.rates(count)}")
    print(
        f"  {count:,} in {elapsed.wall_s:.1f} s, connector at {elapsed.core_share:.0%} of a core,"
        f" {sum(source.stats.errors for source in inputs)} errors"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
