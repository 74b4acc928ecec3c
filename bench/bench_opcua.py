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
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from linefiles import write_line
from measure import Elapsed, Stopwatch, child_cpu_seconds, machine_description
from processes import HOST, child, free_port, run_main, wait_listening

from connectors.config import parse_config
from core.inputs import Emit, Input
from core.sample import Sample
from plc_sim.spec import LineSpec
from shopfloor.simconfig import sim_connectors

TICK_S = 0.1
WARMUP_S = 3.0
CONNECT_TIMEOUT_S = 30.0
SERVER_START_S = 60.0


class Counter:
    """The emits of the measured inputs: one shared count, and an event once all deliver."""

    def __init__(self, inputs: int) -> None:
        self.samples = 0
        self.all_delivering = asyncio.Event()
        self._silent = inputs

    def emit(self) -> Emit:
        """An emit for one input."""
        first = True

        async def emit(samples: Sequence[Sample]) -> None:
            nonlocal first
            self.samples += len(samples)
            if first:
                first = False
                self._silent -= 1
                if not self._silent:
                    self.all_delivering.set()

        return emit


def opcua_inputs(lines: Sequence[tuple[LineSpec, int]]) -> list[Input]:
    """One OPC UA connector entry per (line, port), as `shopfloor up` would generate it."""
    entries = []
    for spec, port in lines:
        generated = sim_connectors(spec, HOST, opcua_port=port, modbus_port=1)
        (entry,) = [c for c in generated["connectors"] if c["type"] == "opcua"]
        for tag in entry["tags"]:
            tag["line"] = spec.line  # the servers' lines share machine names
        entries.append(entry)
    text = yaml.safe_dump({"site": "bench", "line": "bench", "connectors": entries})
    return parse_config(text, Path("<bench connectors>")).build_inputs()


async def measure(
    inputs: Sequence[Input], servers: Sequence[int], seconds: float
) -> tuple[int, Elapsed, list[float]]:
    """Wait until every input delivers, warm up, then count the samples of `seconds`; also the
    share of a core each server process (by pid) used meanwhile."""
    counter = Counter(len(inputs))
    async with asyncio.TaskGroup() as tasks:
        running = [tasks.create_task(source.run(counter.emit())) for source in inputs]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await counter.all_delivering.wait()
            await asyncio.sleep(WARMUP_S)
            before, watch = counter.samples, Stopwatch()
            server_cpu = [child_cpu_seconds(pid) for pid in servers]
            await asyncio.sleep(seconds)
            elapsed = watch.elapsed()
            shares = [
                (child_cpu_seconds(pid) - cpu) / elapsed.wall_s
                for pid, cpu in zip(servers, server_cpu, strict=True)
            ]
            return counter.samples - before, elapsed, shares
        finally:
            for task in running:
                task.cancel()


@dataclass(frozen=True)
class Server:
    """One simulator process serving one bench line over OPC UA."""

    spec: LineSpec
    port: int
    process: subprocess.Popen[bytes]


def start_servers(
    stack: contextlib.ExitStack, folder: Path, count: int, copies: int
) -> list[Server]:
    """`count` simulator processes, each with a line of its own; stopped when `stack` closes."""
    servers = []
    for number in range(1, count + 1):
        path, spec = write_line(
            folder, line=f"bench{number}", copies=copies, tick_s=TICK_S, only="opcua"
        )
        port = free_port()
        argv = [sys.executable, "-m", "plc_sim", "--line", str(path), "--modbus-port", "0"]
        process = stack.enter_context(child([*argv, "--opcua-port", str(port)]))
        servers.append(Server(spec, port, process))
    for server in servers:
        wait_listening(server.process, server.port, SERVER_START_S)
    return servers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3, help="simulator processes")
    parser.add_argument("--copies", type=int, default=18, help="copies of the line per server")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time")
    args = parser.parse_args(argv)
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = start_servers(stack, Path(tmp), args.servers, args.copies)
        inputs = opcua_inputs([(server.spec, server.port) for server in servers])
        variables = sum(len(m.signals) for s in servers for m in s.spec.machines.values())
        print(
            f"{args.servers} simulator processes, {variables:,} OPC UA variables in all, "
            f"tick {TICK_S} s; 1 connector process with {len(inputs)} OPC UA inputs"
        )
        pids = [server.process.pid for server in servers]
        count, elapsed, shares = asyncio.run(measure(inputs, pids, args.seconds))
    print(f"notifications: {elapsed.rates(count)}")
    print(
        f"  {count:,} in {elapsed.wall_s:.1f} s, connector at {elapsed.core_share:.0%} of a core,"
        f" {sum(source.stats.errors for source in inputs)} errors"
    )
    print(f"  simulator processes at {', '.join(f'{share:.0%}' for share in shares)} of a core")
    return 0


if __name__ == "__main__":
    run_main(main)
