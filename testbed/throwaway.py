"""What the throwaway servers of tests and benchmarks (influxd, mosquitto) share: a process on a
temporary folder, stopped (SIGTERM, then SIGKILL) and its folder deleted on the way out."""

from __future__ import annotations

import subprocess
import tempfile
from types import TracebackType
from typing import Self


class ThrowawayServer:
    """A server process of our own; subclasses start it (`start`) in `self._tmp`."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The running server's process id (benchmarks count its CPU time)."""
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return self._proc.pid

    def stop(self) -> None:
        """Terminate (then kill) the server and delete its files."""
        if self._proc is not None:
            self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _terminate(self) -> None:
        assert self._proc is not None
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
