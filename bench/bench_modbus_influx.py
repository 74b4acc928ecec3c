"""Modbus -> spool -> InfluxDB end to end: `shopfloor connect` against a fast C server.

Run: .venv/bin/python bench/bench_modbus_influx.py [--seconds 20] [--warmup 5]
Builds the tests' Modbus TCP server on libmodbus (tests/second_stack/libmodbus/server.c in its
`--moving` mode; needs cc and libmodbus-dev), starts it and a throwaway influxd (InfluxDB 1.x)
on free loopback ports, and runs the real `shopfloor connect` as a subprocess with its durable
spool on: one connector, 12 unit ids x 125 uint16 holding registers (FC3, one coalesced read
each), polled every 2 ms, every register stored as a point. Once InfluxDB holds the first
samples (start-up, imports and the config are not measured) and after a warm-up, it measures
over `--seconds` the samples stamped in that window that InfluxDB holds once the pipeline had 3
s to catch up (stored samples/s), the connector process's CPU-seconds (/proc/PID/stat utime +
stime, user and system shown apart), its peak RSS (VmHWM) and the load average; `--device-json`
and `--connector-json` set e.g. the requests in flight (`{"max_in_flight": 1}`).
Then it runs the C reference client (bench/c_reference/modbus_influx.c, built with cc against
libmodbus: the same reads and lines, as many points a POST, one keep-alive connection) on the
same workload, measured the same way, and prints our figures as ratios to it (`--no-reference`
skips it).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import child_cpu_seconds, descendants, machine_description
from processes import child, free_port, run_main, shopfloor_connect, wait_listening

from delivery.writer import HistorianWriter
from testbed.influxd import Influxd

UNITS = 12
REGISTERS = 125
POLL_S = 0.002
MAX_UNIT = 247  # devices past this many share unit ids (the C server answers any)
CATCH_UP_S = 3.0
START_TIMEOUT_S = 60.0
# the libmodbus server of the tests, in its bench mode (`--moving`: 125 registers that change)
SERVER_SOURCE = Path(__file__).parents[1] / "tests" / "second_stack" / "libmodbus" / "server.c"
REFERENCE_SOURCE = Path(__file__).parent / "c_reference" / "modbus_influx.c"
# as many points a POST as `shopfloor connect` writes (its writer's default batch)
POINTS_PER_POST = inspect.signature(HistorianWriter).parameters["batch_size"].default


def compile_c(source: Path, binary: Path, *extra: str) -> Path:
    """Compile `source` against libmodbus (pkg-config gives the flags)."""
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libmodbus"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source), *flags, *extra], check=True)
    return binary


def build_server(folder: Path) -> Path:
    """The C Modbus server of the tests."""
    return compile_c(SERVER_SOURCE, folder / "modbus_server")


@dataclass(frozen=True, slots=True)
class Workload:
    """`devices` devices of REGISTERS uint16 holding registers each, polled every `poll_s`:
    the bench's 12 x 125 every 2 ms by default; more devices and a slower poll for memory."""

    devices: int = UNITS
    poll_s: float = POLL_S

    @property
    def registers(self) -> int:
        return self.devices * REGISTERS

    def describe(self) -> str:
        return f"{self.devices} devices x {REGISTERS} uint16 FC3, poll {self.poll_s * 1000:g} ms"


def connectors_file(
    folder: Path,
    port: int,
    extra: dict[str, object],
    connector: dict[str, object],
    workload: Workload = Workload(),
) -> Path:
    """One connector, `workload.devices` devices of REGISTERS uint16 tags each, unit ids 1, 2,
    ... (again from 1 past MAX_UNIT) and machines unit01, unit02, ... (JSON is valid YAML)."""
    devices = [
        {
            "unit": index % MAX_UNIT + 1,
            "machine": f"unit{index + 1:02d}",
            "tags": [
                {"signal": f"r{i:03d}", "table": "holding", "address": i, "type": "uint16"}
                for i in range(REGISTERS)
            ],
            **extra,
        }
        for index in range(workload.devices)
    ]
    config = {
        "site": "bench",
        "line": "bench",
        "connectors": [
            {
                "type": "modbus",
                "name": "bench",
                "url": f"modbus://127.0.0.1:{port}",
                "poll_interval_s": workload.poll_s,
                "devices": devices,
                **connector,
            }
        ],
    }
    path = folder / "connectors.yaml"
    path.write_text(json.dumps(config))
    return path


def stored_between(url: str, start_ns: int, end_ns: int) -> int:
    """Points InfluxDB holds stamped in [start_ns, end_ns) (`count(quality)`: every sample has
    a quality, good or bad, so this counts samples whatever their type or value)."""
    query = f"SELECT count(quality) FROM telemetry WHERE time >= {start_ns} AND time < {end_ns}"
    params = urllib.parse.urlencode({"db": "bench", "q": query})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=60) as resp:
        doc = json.load(resp)
    series = doc["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def wait_storing(url: str, client: subprocess.Popen[bytes]) -> None:
    """Until InfluxDB holds the first samples: the client has started and is polling."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while stored_between(url, 0, time.time_ns() + 10**9) == 0:
        if client.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{client.args[0]} stored nothing (see its log above)")
        time.sleep(0.5)


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_mb(pid: int, which: str = "VmHWM") -> float:
    """Peak RSS of `pid` (VmHWM), or its RSS now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{which}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(frozen=True, slots=True)
class Window:
    """One measured window of a client (ours or another) writing into influxd: what InfluxDB
    holds stamped in it and what the client, the server and influxd spent on it."""

    wall_s: float
    stored: int
    user_s: float
    system_s: float
    rss_mb: float  # peak (VmHWM)
    rss_end_mb: float  # at the end of the window (VmRSS)
    load: tuple[float, float, float]
    influxd_cpu_s: float
    server_cpu_s: float
    processes: int = 1

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s

    def print(self, client: str, workload: Workload = Workload()) -> None:
        """The figures, in the same layout for every client so two runs read side by side."""
        wall, cpu = self.wall_s, self.cpu_s
        print(f"  load average  {self.load[0]:>11.2f} (1 min), {self.load[1]:.2f} (5 min)")
        print(f"  stored        {self.stored / wall:>11,.0f} samples/s")
        per_unit = self.stored / wall / workload.registers
        of = 1 / workload.poll_s
        print(f"  answers       {per_unit:>11,.1f} per device per second (of {of:g})")
        share = (
            f"{cpu / wall:.0%} of a core: user {self.user_s:.1f} s, system {self.system_s:.1f} s"
        )
        if self.processes > 1:
            share += f", {self.processes} processes"
        per_cpu = self.stored / cpu if cpu else math.inf  # under a clock tick
        print(f"  {client:<13} {per_cpu:>11,.0f} samples per CPU-second ({share})")
        print(
            f"  {client:<13} {self.rss_mb:>11,.0f} MB peak RSS, {self.rss_end_mb:,.0f} MB at "
            "the end of the window"
        )
        print(f"  influxd       {self.influxd_cpu_s / wall:>11.0%} of a core")
        print(f"  C server      {self.server_cpu_s:>11,.1f} CPU-seconds in all")


def measure(
    url: str, client: int, influxd: int, server: int, warmup_s: float, seconds: float
) -> Window:
    """After `warmup_s`, count over `seconds` the CPU of the `client` process (and of any
    children it has by then) and of influxd, then what InfluxDB holds stamped in the window
    once the pipeline had CATCH_UP_S to deliver it."""
    time.sleep(warmup_s)
    pids = [client, *descendants(client)]
    cpu0, influx0, t0 = [cpu_split(pid) for pid in pids], child_cpu_seconds(influxd), time.time_ns()
    time.sleep(seconds)
    cpu1, influx1, t1 = [cpu_split(pid) for pid in pids], child_cpu_seconds(influxd), time.time_ns()
    load, rss_end = os.getloadavg(), rss_mb(client, "VmRSS")
    time.sleep(CATCH_UP_S)
    return Window(
        wall_s=(t1 - t0) / 1e9,
        stored=stored_between(url, t0, t1),
        user_s=sum(end[0] - start[0] for start, end in zip(cpu0, cpu1, strict=True)),
        system_s=sum(end[1] - start[1] for start, end in zip(cpu0, cpu1, strict=True)),
        rss_mb=rss_mb(client),
        rss_end_mb=rss_end,
        load=load,
        influxd_cpu_s=influx1 - influx0,
        server_cpu_s=child_cpu_seconds(server),
        processes=len(pids),
    )


@dataclass(frozen=True, slots=True)
class Bench:
    """The servers of one run: the C Modbus server on `port`, a fresh influxd, a temp folder."""

    folder: Path
    port: int
    server: subprocess.Popen[bytes]
    influx: Influxd


@contextlib.contextmanager
def servers(prefix: str) -> Iterator[Bench]:
    """The libmodbus server (built in a temp folder) and a throwaway influxd, for one client."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = Path(tmp)
        port = free_port()
        server_argv = [str(build_server(folder)), str(port), "--moving"]
        with child(server_argv) as server, Influxd() as influx:
            wait_listening(server, port, 10)
            yield Bench(folder, port, server, influx)


def influx_query(url: str, query: str, method: str = "GET") -> list[dict[str, Any]]:
    """The series of one InfluxQL statement on database `bench` (POST for the ones that write)."""
    params = urllib.parse.urlencode({"db": "bench", "q": query})
    if method == "POST":
        request = urllib.request.Request(f"{url}/query", data=params.encode(), method="POST")
    else:
        request = urllib.request.Request(f"{url}/query?{params}")
    with urllib.request.urlopen(request, timeout=60) as resp:
        doc = json.load(resp)
    result = doc["results"][0]
    if "error" in result:
        raise RuntimeError(f"{query}: {result['error']}")
    return list(result.get("series", []))


def measure_client(bench: Bench, argv: list[str], warmup_s: float, seconds: float) -> Window:
    """Run `argv` against `bench`'s servers and measure it once it stores."""
    with child(argv) as process:
        wait_storing(bench.influx.url, process)
        return measure(
            bench.influx.url, process.pid, bench.influx.pid, bench.server.pid, warmup_s, seconds
        )


def run(
    seconds: float,
    warmup_s: float,
    device: dict[str, object],
    connector: dict[str, object],
    workload: Workload = Workload(),
) -> Window:
    """One run of `shopfloor connect` against the C server into a fresh influxd, measured."""
    with servers("bench-mbinflux-") as bench:
        config = connectors_file(bench.folder, bench.port, device, connector, workload)
        http = urllib.parse.urlsplit(bench.influx.url).netloc
        argv = shopfloor_connect(config, f"influxdb://{http}/bench", bench.folder / "spool")
        return measure_client(bench, argv, warmup_s, seconds)


def run_reference(seconds: float, warmup_s: float, workload: Workload = Workload()) -> Window:
    """One run of the C reference client (bench/c_reference) on the same workload, measured
    the same way: what a lean client costs, to give ours (and Node-RED's) figures as ratios."""
    with servers("bench-creference-") as bench:
        influx_query(bench.influx.url, "CREATE DATABASE bench", method="POST")
        binary = compile_c(REFERENCE_SOURCE, bench.folder / "modbus_influx", "-lpthread")
        influx_port = urllib.parse.urlsplit(bench.influx.url).port
        poll_us = round(workload.poll_s * 1e6)
        shape = (workload.devices, REGISTERS, poll_us, POINTS_PER_POST)
        argv = [str(binary), str(bench.port), str(influx_port), "bench", *map(str, shape)]
        return measure_client(bench, argv, warmup_s, seconds)


def print_ratios(client: str, window: Window, reference: Window, name: str) -> None:
    """`window`'s figures as multiples of `reference`'s (measured on the same machine)."""
    print(f"{client} / {name}")
    stored = window.stored / window.wall_s / (reference.stored / reference.wall_s)
    print(f"  stored/s      {stored:>11.2f}x")
    per_cpu = window.stored * reference.cpu_s / (window.cpu_s * reference.stored or math.nan)
    print(f"  per CPU-s     {per_cpu:>11.2f}x")
    print(f"  peak RSS      {window.rss_mb / reference.rss_mb:>11.2f}x")


def describe(
    window: Window,
    warmup_s: float,
    device: dict[str, object],
    connector: dict[str, object],
    workload: Workload = Workload(),
) -> str:
    in_flight = {**connector, **device}.get("max_in_flight", "default")
    return (
        f"shopfloor connect, {workload.describe()}, spool on, InfluxDB 1.x, "
        f"{window.wall_s:.0f} s after {warmup_s:g} s warm-up, "
        f"max_in_flight {in_flight} (connector {connector}, devices {device})"
    )


def describe_reference(window: Window, warmup_s: float) -> str:
    return (
        f"C reference (bench/c_reference: libmodbus, one read per unit id in flight, "
        f"{POINTS_PER_POST:,} points a POST on one keep-alive connection), the same workload, "
        f"{window.wall_s:.0f} s after {warmup_s:g} s warm-up"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--device-json", default="{}", help='extra device settings, e.g. {"max_in_flight": 2}'
    )
    parser.add_argument(
        "--connector-json", default="{}", help='extra connector settings, e.g. {"max_in_flight": 1}'
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the C reference client's run"
    )
    parser.add_argument(
        "--devices", type=int, default=UNITS, help="devices of 125 registers (memory: 480)"
    )
    parser.add_argument("--poll-s", type=float, default=POLL_S, help="poll interval")
    args = parser.parse_args()
    if shutil.which("cc") is None:
        print("needs cc and libmodbus-dev: apt-get install gcc libmodbus-dev pkg-config")
        return 2
    print(machine_description())
    device, connector = json.loads(args.device_json), json.loads(args.connector_json)
    workload = Workload(args.devices, args.poll_s)
    window = run(args.seconds, args.warmup, device, connector, workload)
    print(describe(window, args.warmup, device, connector, workload))
    window.print("connector", workload)
    if not args.no_reference:
        reference = run_reference(args.seconds, args.warmup, workload)
        print(describe_reference(reference, args.warmup))
        reference.print("C client", workload)
        print_ratios("shopfloor connect", window, reference, "C reference")
    return 0


if __name__ == "__main__":
    run_main(main)
