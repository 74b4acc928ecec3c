"""Child processes of a bench run: servers on free loopback ports, always stopped at the end.

The servers run in processes of their own so that the measuring process's CPU time is the
client's alone. A child is stopped on every way out of its `with` block (normal end, exception,
Ctrl-C): SIGTERM first, SIGKILL if it does not go.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def venv_command(name: str) -> str:
    """A console script installed next to the running interpreter, e.g. `shopfloor`."""
    return str(Path(sys.executable).with_name(name))


def shopfloor_connect(config: Path, historian: str, spool: Path) -> list[str]:
    """The command line of `shopfloor connect` as a bench runs it: warnings only, spool on."""
    return [
        venv_command("shopfloor"),
        "--log-level",
        "warning",
        "connect",
        "--config",
        str(config),
        "--historian",
        historian,
        "--spool",
        str(spool),
    ]


@contextlib.contextmanager
def child(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` for the duration of the block (in `env`, else ours); its stderr is kept for
    error messages."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        try:
            yield process
        finally:
            _stop(process)
            if process.returncode not in (0, -15):
                stderr.seek(0)
                tail = stderr.read()[-2000:].decode(errors="replace")
                print(f"{argv[0]} exited with {process.returncode}:\n{tail}", file=sys.stderr)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    """Block until `port` accepts connections; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout_s} s")


def run_main(main: Callable[[], int]) -> NoReturn:
    """Exit with what a bench's `main` returns; Ctrl-C ends it with 130 and no traceback (the
    `with` blocks have stopped every child by the time the interrupt gets here)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
