"""First-run benchmark: from a fresh clone to the first live values of `bin/shopfloor up`.

Run: python3 bench/bench_first_run.py [--repo DIR] [--runs N]
Clones the repository's committed HEAD into a temporary folder (no `.venv`, no models: what a
student has after `git clone`), then runs `bin/shopfloor up` there as the README says, with
the system's python3, on free loopback ports, and measures the wall time from the command to the
first status line that reports stored samples (the first live values in the historian); then
stops it with Ctrl-C (SIGINT). The same command again (`--runs`, default 2) measures a later
run, with the environment and the models in place. pip's cache is used as it is: run it once
before to have it warm. Prints each set-up step `bin/bootstrap` and `up` announce, with the
time since the command when it was printed, and everything else they print on stderr (a
warning box would show there).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from measure import machine_description
from processes import free_port

FIRST_VALUES = re.compile(r"stored [1-9]\d* samples")
# pip's notes about index locations in the machine's pip.conf: the machine's, not the project's
MIRROR_NOTE = re.compile(r"WARNING: Location '.*' is ignored")
TIMEOUT_S = 900.0


def run_once(clone: Path) -> tuple[float, list[tuple[float, str]]]:
    """Seconds to the first live values, and what the command printed on stderr (the set-up
    steps), each line with its time since the start."""
    argv = [
        str(clone / "bin" / "shopfloor"),
        "up",
        *("--opcua-port", str(free_port()), "--modbus-port", str(free_port())),
        "--no-view",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=clone,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    said: list[tuple[float, str]] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            said.append((time.monotonic() - started, line.rstrip()))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if FIRST_VALUES.search(line):
                return time.monotonic() - started, said
            if time.monotonic() - started > TIMEOUT_S:
                break
        raise SystemExit(f"no live values within {TIMEOUT_S:.0f} s: {said[-5:]}")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--runs", type=int, default=2, help="the first run and later ones")
    args = parser.parse_args()
    print(machine_description())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="shopfloor-first-run-") as folder:
        clone = Path(folder) / "shopfloor"
        subprocess.run(["git", "clone", "--quiet", str(args.repo), str(clone)], check=True)
        for run in range(args.runs):
            seconds, said = run_once(clone)
            label = "fresh clone" if run == 0 else f"later run {run}"
            print(f"{label}: first live values {seconds:.1f} s after the command")
            mirrors = [line for _, line in said if MIRROR_NOTE.search(line)]
            for at, line in said:
                if line.strip() and not MIRROR_NOTE.search(line):
                    print(f"    {at:6.1f} s  {line[:150]}")
            if mirrors:
                print(f"    ({len(mirrors)} notes of this machine's pip configuration left out)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())
