"""Servers nobody on this team wrote, for proving the connectors against a second stack.

- `node_opcua_server`: node-opcua (npm, installed by bin/test with `npm ci` in node_opcua/), a
  locked-down PLC: secured endpoint only, a login, unknown client certificates refused and
  filed under <pki>/rejected until moved to <pki>/trusted/certs; source timestamps change only
  with the value. Variables (ns=1): oven.temperature (Double, °C, +0.5 every 200 ms),
  oven.mode (Int32 3), oven.running (Boolean true), oven.bottles (UInt32 4000000001),
  oven.setpoint (Double 12345.678), all constant but the first.
- `node_opcua_s7_server`: node-opcua laid out like a Siemens S7-1500 (node_opcua/s7_server.js):
  namespace http://www.siemens.com/simatic-s7-opcua at index 3 (4 with `extra_ns`, another
  PLC's at 3), ids like ns=3;s="DB_Line"."Motor1"."Speed", one variable per built-in type, a
  Float[10] and an enumeration with EnumStrings; open and anonymous.
- `node_opcua_alarm_server`: node-opcua, open and anonymous, with a limit alarm and an off-normal
  alarm on writable variables of Objects/tank (node_opcua/alarm_server.js).
- `node_opcua_history_server`: node-opcua historizing Doubles ns=1;s=line.v0.. that change every
  100 ms (node_opcua/history_server.js), for the history backfill; open and anonymous.
- `node_opcua_scale_server`: node-opcua again, open and anonymous, with N doubles ns=1;s=v0..
  that all change at every whole second, announcing (and enforcing) the limits it is given.
- `libmodbus_server`: a C Modbus TCP server on Debian's libmodbus (bin/test installs
  libmodbus-dev), compiled here with cc; its registers are described in libmodbus/server.c.

Each is started on a free loopback port in a temp folder and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.influxd import free_port

HERE = Path(__file__).parent
NODE_USER, NODE_PASSWORD = "operator", "n0de-Pa55"
START_TIMEOUT_S = 60.0  # node loads its modules, cc compiles: seconds on a busy machine


@dataclass
class Running:
    """A started server: its process, port and (OPC UA) pki folder."""

    process: subprocess.Popen[str]
    port: int
    folder: Path

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/plc"

    @property
    def url(self) -> str:
        return f"modbus://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def trust_rejected_clients(self) -> list[Path]:
        """What a PLC's operator does: move every rejected client certificate to trusted."""
        trusted = self.folder / "pki" / "trusted" / "certs"
        moved = []
        for cert in sorted((self.folder / "pki" / "rejected").iterdir()):
            moved.append(Path(shutil.move(cert, trusted / cert.name)))  # replaces a copy there
        return moved


def _wait_ready(process: subprocess.Popen[str], log: Path, what: str) -> None:
    """Until the server's output (a file: a pipe nobody reads could block it) says READY."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if any(line.startswith("READY") for line in log.read_text().splitlines()):
            return
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=10)
    pytest.fail(f"{what} did not start: {log.read_text()[-2000:]}", pytrace=False)


@contextlib.contextmanager
def _serving(command: list[str], folder: Path, port: int, env: dict[str, str]) -> Iterator[Running]:
    log = folder / f"{Path(command[0]).name}-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
            cwd=folder,
        )
    try:
        _wait_ready(process, log, command[0])
        yield Running(process, port, folder)
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def node_opcua_server(folder: Path) -> Iterator[Running]:
    """The node-opcua server on a free port; its pki in folder/pki."""
    script = HERE / "node_opcua" / "server.js"
    _check_node_opcua(script)
    port = free_port()
    env = {
        "PORT": str(port),
        "PKI": str(folder / "pki"),
        "OPCUA_USER": NODE_USER,
        "OPCUA_PASSWORD": NODE_PASSWORD,
    }
    with _serving(["node", str(script)], folder, port, env) as server:
        yield server


@contextlib.contextmanager
def node_opcua_s7_server(
    folder: Path, *, extra_ns: bool = False, port: int | None = None
) -> Iterator[Running]:
    """node_opcua/s7_server.js on `port` (a free one by default)."""
    script = HERE / "node_opcua" / "s7_server.js"
    _check_node_opcua(script)
    port = port or free_port()
    env = {"PORT": str(port), "EXTRA_NS": "1" if extra_ns else "0"}
    with _serving(["node", str(script)], folder, port, env) as server:
        yield server


@contextlib.contextmanager
def node_opcua_alarm_server(folder: Path) -> Iterator[Running]:
    """node-opcua with alarms (node_opcua/alarm_server.js), open and anonymous, on a free port."""
    script = HERE / "node_opcua" / "alarm_server.js"
    _check_node_opcua(script)
    port = free_port()
    with _serving(["node", str(script)], folder, port, {"PORT": str(port)}) as server:
        yield server


@contextlib.contextmanager
def node_opcua_history_server(folder: Path, items: int = 5) -> Iterator[Running]:
    """node-opcua historizing `items` Doubles that change every 100 ms
    (node_opcua/history_server.js), open and anonymous, on a free port."""
    script = HERE / "node_opcua" / "history_server.js"
    _check_node_opcua(script)
    port = free_port()
    env = {"PORT": str(port), "ITEMS": str(items)}
    with _serving(["node", str(script)], folder, port, env) as server:
        yield server


@contextlib.contextmanager
def node_opcua_scale_server(
    folder: Path, items: int, settings: dict[str, str] | None = None
) -> Iterator[Running]:
    """node_opcua/scale_server.js on a free port: `items` doubles; `settings` are its limits
    (e.g. MAX_MONITORED_ITEMS_PER_CALL) or NO_CAPABILITIES=1."""
    script = HERE / "node_opcua" / "scale_server.js"
    _check_node_opcua(script)
    port = free_port()
    env = {"PORT": str(port), "ITEMS": str(items), **(settings or {})}
    with _serving(["node", str(script)], folder, port, env) as server:
        yield server


def _check_node_opcua(script: Path) -> None:
    if not (HERE / "node_opcua" / "node_modules" / "node-opcua").is_dir():
        pytest.fail(
            f"node-opcua is not installed: run bin/test (it runs `npm ci` in {script.parent})",
            pytrace=False,
        )


def libmodbus_binary(folder: Path) -> Path:
    """libmodbus/server.c compiled into `folder` with cc."""
    if shutil.which("cc") is None or not Path("/usr/include/modbus/modbus.h").is_file():
        pytest.fail("needs cc and libmodbus-dev: run bin/test (it installs them)", pytrace=False)
    binary = folder / "libmodbus-server"
    subprocess.run(
        [
            "cc",
            "-O1",
            "-I/usr/include/modbus",
            "-o",
            str(binary),
            str(HERE / "libmodbus" / "server.c"),
            "-lmodbus",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return binary


@contextlib.contextmanager
def libmodbus_server(binary: Path, port: int | None = None) -> Iterator[Running]:
    """The compiled libmodbus server on `port` (default: a free one)."""
    port = port or free_port()
    with _serving([str(binary), str(port)], binary.parent, port, {}) as server:
        yield server
