"""Memory benchmark: resident set size of `shopfloor up` running the default line.

Run: .venv/bin/python bench/bench_memory.py [--seconds S] [--models DIR]
Starts `shopfloor up --duration S --historian sqlite:<temp file>` on free loopback ports (the
simulator, both connectors, the historian writer and the detector in one process) and reads
VmRSS and VmHWM (the kernel's peak RSS) from /proc/<pid>/status every 0.5 s until it exits, and
the peak of its child processes (the one-off training of a first start) apart. With --models, the
models folder is kept: the first run trains, later runs load.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from measure import machine_description
from processes import child, free_port, run_main, venv_command

from core.schema import ANOMALY, TELEMETRY

SAMPLE_EVERY_S = 0.5
EXIT_GRACE_S = 30.0
MIB = 2**20


@dataclass(frozen=True, slots=True)
class Reading:
    at_s: float
    rss: int  # bytes
    peak: int  # bytes, VmHWM


def read_status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in bytes, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie has no memory left to report
        return None
    return _kib(fields["VmRSS"]), _kib(fields["VmHWM"])


def _kib(value: str) -> int:
    return int(value.split()[0]) * 1024


def children(pid: int) -> list[int]:
    """The process's child processes (Linux: /proc/<pid>/task/*/children)."""
    found = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in listing.read_text().split()]
    return found


def rows_of(database: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long `shopfloor up` runs")
    parser.add_argument("--models", type=Path, help="a models folder kept between runs")
    args = parser.parse_args(argv)
    print(machine_description())
    readings: list[Reading] = []
    child_peaks: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bench.db"
        trains = args.models is None or not any(args.models.glob("*.npz"))
        command = [
            venv_command("shopfloor"),
            "up",
            f"--duration={args.seconds}s",
            f"--historian=sqlite:{database}",
            f"--opcua-port={free_port()}",
            f"--modbus-port={free_port()}",
            f"--models={args.models or Path(tmp) / 'models'}",
        ]
        with child(command) as process:
            started = time.monotonic()
            deadline = started + args.seconds + EXIT_GRACE_S
            while process.poll() is None and time.monotonic() < deadline:
                status = read_status(process.pid)
                if status is not None:
                    readings.append(Reading(time.monotonic() - started, *status))
                for pid in children(process.pid):
                    if (child_status := read_status(pid)) is not None:
                        child_peaks[pid] = max(child_peaks.get(pid, 0), child_status[1])
                time.sleep(SAMPLE_EVERY_S)
            exit_code = process.poll()
        if not readings or exit_code != 0:
            print(f"shopfloor up ended with exit code {exit_code}", file=sys.stderr)
            return 1
        rows, scores = rows_of(database, TELEMETRY.name), rows_of(database, ANOMALY.name)
    start = "first start: trains its models" if trains else "later start: loads its models"
    print(f"`shopfloor up`, default line, SQLite historian, {args.seconds} s, {start}:")
    for mark in range(10, args.seconds + 1, 10):
        reading = min(readings, key=lambda r: abs(r.at_s - mark))
        print(f"  at {reading.at_s:5.1f} s: RSS {reading.rss / MIB:6.1f} MiB")
    print(f"peak RSS (VmHWM): {max(r.peak for r in readings) / MIB:.1f} MiB")
    print(f"final RSS:        {readings[-1].rss / MIB:.1f} MiB ({len(readings)} samples)")
    for pid, peak in child_peaks.items():
        print(f"child process {pid} (training) peak RSS: {peak / MIB:.1f} MiB")
    print(f"telemetry rows written: {rows:,}, anomaly scores: {scores:,} (it ran and scored)")
    return 0


if __name__ == "__main__":
    run_main(main)
