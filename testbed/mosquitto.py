"""Run a throwaway `mosquitto` (Debian's, 2.x: MQTT 5) for tests and benchmarks.

On a free loopback port with its config, persistence file and log in a temporary folder, like
testbed.influxd. `restart()` stops it (SIGTERM: it saves its persistent sessions and queued
messages) and starts it again on the same port and folder.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from testbed.influxd import free_port
from testbed.throwaway import ThrowawayServer

INSTALL_HINT = "install Debian's mosquitto (`apt-get install mosquitto`), as bin/test does"


def _config(root: Path, port: int, extra: str) -> str:
    # Started as root, mosquitto would switch to the user `mosquitto`, who cannot write here.
    return f"""user {getpass.getuser()}
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {root}/
autosave_interval 60
max_queued_messages 0
queue_qos0_messages true
max_inflight_messages 100
max_keepalive 60
log_dest file {root}/mosquitto.log
log_type error
log_type warning
{extra}"""


class Mosquitto(ThrowawayServer):
    """A private broker process; use as a context manager, `url` is mqtt://127.0.0.1:PORT."""

    def __init__(self, *, start_timeout: float = 10.0, extra_config: str = "") -> None:
        """`extra_config`: more lines for mosquitto.conf (TLS files, a password file)."""
        found = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
        if found is None:
            raise FileNotFoundError(f"mosquitto not found: {INSTALL_HINT}")
        super().__init__()
        self._binary = found
        self._start_timeout = start_timeout
        self._extra = extra_config
        self.port = 0
        self.url = ""

    @property
    def folder(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp.name)

    def start(self) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self.port = free_port()
        (self.folder / "mosquitto.conf").write_text(_config(self.folder, self.port, self._extra))
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._launch()
        return self.url

    def _launch(self) -> None:
        with (self.folder / "stdout.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "-c", str(self.folder / "mosquitto.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log_text = (self.folder / "stdout.log").read_text()[-2000:]
                self.stop()
                raise RuntimeError(f"mosquitto exited at start: {log_text}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen within {self._start_timeout} s")

    def halt(self) -> None:
        """Stop it (it saves its sessions and queues), keeping port and folder."""
        self._terminate()

    def resume(self) -> None:
        """Start a halted broker again on the same port and persistence file."""
        self._launch()

    def restart(self) -> None:
        self.halt()
        self.resume()
