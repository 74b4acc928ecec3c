"""Run a throwaway `influxd` (InfluxDB 1.x) for tests and benchmarks.

Everything lives in a temporary folder and on free loopback ports, so several runs (and a
developer's own InfluxDB on 8086/8088) never collide. Synchronous on purpose: it is used from a
pytest session fixture and from a benchmark script, never from inside the event loop.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from testbed.throwaway import ThrowawayServer

INSTALL_HINT = (
    "install InfluxDB 1.x (`apt-get install influxdb` puts influxd on PATH) "
    "or set INFLUX_URL=http://HOST:PORT to use a running 1.x server"
)


_FIRST_PORT = 20_000  # below Linux's ephemeral range (32768-60999), where bind(0) picks
_PORTS_PER_WORKER = 2_000
_picks = itertools.count(random.randrange(_PORTS_PER_WORKER))  # another start per process


def free_port() -> int:
    """A loopback TCP port nobody listens on right now, from a block of its own per
    pytest-xdist worker and below the ephemeral range: between this pick and the server's
    bind, neither the other worker's servers nor any outgoing connection (whose port the kernel
    takes from the ephemeral range, as bind(0) would) can take it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = _FIRST_PORT + (int(worker) if worker.isdigit() else 0) % 6 * _PORTS_PER_WORKER
    for _ in range(_PORTS_PER_WORKER):
        port = base + next(_picks) % _PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or still closing
        return port
    raise RuntimeError(f"no free loopback port in {base}..{base + _PORTS_PER_WORKER - 1}")


def _config(root: Path, rpc_port: int, http_port: int, auth_enabled: bool) -> str:
    return f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root / "meta"}"

[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false

[logging]
  level = "error"
  suppress-logo = true

[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  auth-enabled = {"true" if auth_enabled else "false"}

[monitor]
  store-enabled = false
"""


class Influxd(ThrowawayServer):
    """A private influxd process; use as a context manager, `url` is its HTTP base URL.

    `halt()` and `resume()` stop and start it again on the same ports and data folder, for tests
    of an InfluxDB outage (a restart for an upgrade, a crash).

    With `auth_enabled`, the first user must be created as an admin (InfluxDB allows that one
    statement without credentials).
    """

    def __init__(
        self, binary: str | None = None, *, start_timeout: float = 30.0, auth_enabled: bool = False
    ) -> None:
        found = binary or shutil.which("influxd")
        if found is None:
            raise FileNotFoundError(f"influxd not found on PATH: {INSTALL_HINT}")
        super().__init__()
        self._binary = found
        self._start_timeout = start_timeout
        self._auth_enabled = auth_enabled
        self.url = ""

    def start(self) -> str:
        """Start the server and wait until /ping answers; returns its base URL."""
        self._tmp = tempfile.TemporaryDirectory(prefix="influxd-")
        root = Path(self._tmp.name)
        http_port = free_port()
        config = root / "influxdb.conf"
        config.write_text(_config(root, free_port(), http_port, self._auth_enabled))
        self.url = f"http://127.0.0.1:{http_port}"
        self._launch()
        return self.url

    def _launch(self) -> None:
        """Run influxd on the config in the temp folder until /ping answers; its output is
        appended to influxd.log, so a resumed server keeps the log of the halted one."""
        assert self._tmp is not None
        root = Path(self._tmp.name)
        with (root / "influxd.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "-config", str(root / "influxdb.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(root / "influxd.log")

    def halt(self) -> None:
        """Stop the server as an upgrade or a crash would, keeping its ports and data folder."""
        if self._proc is None:
            raise RuntimeError("influxd is not running")
        self._terminate()

    def resume(self) -> None:
        """Start a halted server again on the same ports and data (what it had stored is back)."""
        if self._tmp is None or self._proc is not None:
            raise RuntimeError("only a halted influxd can be resumed")
        self._launch()

    def _wait_ready(self, log: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"influxd exited at start: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                    if resp.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"influxd did not answer /ping within {self._start_timeout} s")
