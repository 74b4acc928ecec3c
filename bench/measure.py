"""What every bench script reports with: the machine it ran on and the time this process took.

Rates are given per wall second and per CPU-second of the measuring process, so that a figure
from a 2-core laptop can be compared with one from a bigger machine, and a client bounded by its
server shows as a low share of a core rather than as a slow client.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def machine_description() -> str:
    """CPU model, cores, RAM, Python and OS in one line."""
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {_ram_gib():.1f} GiB RAM, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{_os_name()} (kernel {platform.release()})"
    )


def _cpu_model() -> str:
    for line in _read_lines("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float:
    for line in _read_lines("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _os_name() -> str:
    for line in _read_lines("/etc/os-release"):
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class Elapsed:
    """Wall seconds and CPU seconds (all threads of this process) of one measured span."""

    wall_s: float
    cpu_s: float

    @property
    def core_share(self) -> float:
        """How much of one core the process used: 1.0 is one core busy all the time."""
        return self.cpu_s / self.wall_s

    def rates(self, count: float) -> str:
        """`count` over this span, per wall second and per CPU-second, aligned for tables."""
        return f"{count / self.wall_s:>11,.0f}/s wall, {count / self.cpu_s:>11,.0f} per CPU-second"


class Stopwatch:
    """Started on creation; `elapsed()` may be read any number of times."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def elapsed(self) -> Elapsed:
        return Elapsed(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def timed(work: Callable[[], object]) -> Elapsed:
    """Wall and CPU time of one call."""
    watch = Stopwatch()
    work()
    return watch.elapsed()


def child_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds another process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Linux /proc), whose CPU counts as the client's."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
