"""The `shopfloor` command as a user runs it: real processes, real ports, real historians."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from plc_sim.spec import load_line
from shopfloor.cli import COMMAND_GROUPS, build_parser, main
from testbed.influxd import free_port
from tests.ctrl_c import default_sigint

SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]
MACHINES = set(load_line().machines)


def shopfloor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHOPFLOOR, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def in_a_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` keeps its spool and models in the working directory unless told otherwise."""
    monkeypatch.chdir(tmp_path)


def ports() -> list[str]:
    return ["--opcua-port", str(free_port()), "--modbus-port", str(free_port())]


@pytest.fixture(params=["sqlite", "influxdb"])
def historian_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'shopfloor.db'}"
    return request.getfixturevalue("influx_db_url")


@pytest.mark.influxdb
def test_up_then_query_shows_every_machine(historian_url: str) -> None:
    env = {"SHOPFLOOR_HISTORIAN": historian_url}
    up = shopfloor("up", "--duration", "8s", *ports(), env=env)
    assert up.returncode == 0, up.stderr
    assert "Traceback" not in up.stderr
    assert "stored" in up.stdout  # the status line

    query = shopfloor("query", "--json", env=env)
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    assert {row["machine"] for row in rows} == MACHINES
    assert set(rows[0]) >= {"machine", "signal", "value", "unit", "time"}
    temps = [r for r in rows if r["machine"] == "pasteurizer" and r["signal"] == "product_temp_c"]
    assert temps and temps[0]["unit"] == "°C" and isinstance(temps[0]["value"], float)

    table = shopfloor("query", "--machine", "conveyor", "--since", "10m", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["MACHINE", "SIGNAL", "VALUE"]
    assert {line.split()[0] for line in lines[1:]} == {"conveyor"}


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*SHOPFLOOR, "up", *ports(), "--historian", f"sqlite:{tmp_path / 'h.db'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        assert process.stdout is not None
        while not re.search(r"stored [1-9]\d* samples", process.stdout.readline()):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode in (0, 130), err
    assert "Traceback" not in err
    query = shopfloor("query", "--json", "--historian", f"sqlite:{tmp_path / 'h.db'}")
    assert {row["machine"] for row in json.loads(query.stdout)} == MACHINES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["connect", "--config", "no/such.yaml"], "no/such.yaml: cannot read the connectors file"),
        (["up", "--line", "no/such.yaml"], "no/such.yaml"),
        (["query", "--historian", "postgres://x"], "postgres://x"),
        (["query", "--historian", "influxdb2://h:8086"], "INFLUX_"),
    ],
)
def test_user_mistakes_get_one_clear_line_and_exit_2(args: list[str], message: str) -> None:
    result = shopfloor(*args, env={"INFLUX_TOKEN": "", "INFLUX_ORG": "", "INFLUX_BUCKET": ""})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nosuch:delay=1", "no Modbus device 'nosuch' on this line; there are: 1 (conveyor)"),
        ("conveyor:delay=-1", "delay must be 0 or more seconds"),
    ],
)
def test_a_bad_modbus_device_fault_is_one_clear_line(
    fault: str, message: str, tmp_path: Path
) -> None:
    result = shopfloor(
        "sim",
        "--modbus-device-fault",
        fault,
        *ports(),
        "--historian",
        f"sqlite:{tmp_path / 'h.db'}",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = shopfloor(
            "up",
            "--opcua-port",
            port,
            "--modbus-port",
            str(free_port()),
            "--historian",
            f"sqlite:{tmp_path / 'h.db'}",
            "--duration",
            "5s",
        )
    assert result.returncode == 2
    assert f"the OPC UA port 127.0.0.1:{port} is not available" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("group", sorted(COMMAND_GROUPS))
def test_each_group_registers_exactly_the_commands_the_cli_imports_it_for(group: str) -> None:
    sub = next(a for a in build_parser([group])._actions if a.choices and a.dest == "command")
    loaded = tuple(name for name, parser in sub.choices.items() if parser.get_default("handler"))
    assert loaded == COMMAND_GROUPS[group]


@pytest.mark.parametrize("argv", [["--help"], ["no-such-command"]])
def test_the_list_of_commands_loads_no_command(argv: list[str]) -> None:
    """`shopfloor --help` (and the error for an unknown command) lists every command with its
    summary without importing any group: it took 3.4 s and 240 MB, loading scikit-learn."""
    code = (
        "import sys; from shopfloor.cli import main\n"
        f"try: main({argv!r})\n"
        "except SystemExit: pass\n"
        "heavy = ('sklearn', 'pandas', 'matplotlib', 'numpy', 'asyncua', 'pymodbus', 'aiomqtt')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
    listed = done.stdout if argv == ["--help"] else done.stderr
    assert all(name in listed for commands in COMMAND_GROUPS.values() for name in commands)


def test_the_list_shows_the_summaries_the_commands_register() -> None:
    """The light list and the loaded commands say the same of each command."""
    full = build_parser().format_help()
    light = build_parser([]).format_help()
    assert light == full


def test_up_loads_neither_plotting_nor_fitting_libraries() -> None:
    """`up` and `detect` draw nothing and fit nothing in their own process: matplotlib (~30 MB)
    is for `report`; scikit-learn with scipy and pandas (~130 MB) for fitting, which `up` runs
    as `shopfloor train` in a child process."""
    code = (
        "import sys; from shopfloor.cli import main\n"
        "try: main(['up', '--help'])\n"
        "except SystemExit: pass\n"
        "import shopfloor.line_detection\n"
        "print(sorted(m for m in ('matplotlib', 'sklearn', 'scipy', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


def test_models_that_cannot_be_written_are_one_clear_line(tmp_path: Path) -> None:
    """The first start trains in a child process; its failure is the user's error, not a
    traceback."""
    (tmp_path / "a_file").write_text("")
    up = shopfloor(
        "up",
        *("--models", str(tmp_path / "a_file" / "models"), "--duration", "5s"),
        *("--historian", f"sqlite:{tmp_path / 'h.db'}", *ports()),
        timeout=120,
    )
    assert up.returncode == 2
    assert "Traceback" not in up.stderr
    assert f"cannot write models into {tmp_path / 'a_file' / 'models'}" in up.stderr


def test_connect_starts_without_what_it_does_not_run() -> None:
    """Only the group of the command given is imported, and `connect` loads neither the
    simulator, numpy, an MQTT client nor SQLite until a connectors file or an option asks:
    it is the command that runs next to real PLCs, and its memory is theirs."""
    code = (
        "import sys; from shopfloor.cli import main\n"
        "try: main(['connect', '--help'])\n"
        "except SystemExit: pass\n"
        "heavy = ('sklearn', 'pandas', 'numpy', 'connectors.opcua.client', 'plc_sim',\n"
        "         'pymodbus', 'aiomqtt', 'sqlite3')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


@pytest.mark.parametrize("command", ["up", "sim", "connect", "query", "sim-config"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "--historian" in capsys.readouterr().out or command == "sim-config"


def test_sim_and_connect_as_separate_processes(tmp_path: Path) -> None:
    opcua_port, modbus_port = str(free_port()), str(free_port())
    config = tmp_path / "sim.yaml"
    generated = shopfloor("sim-config", "--opcua-port", opcua_port, "--modbus-port", modbus_port)
    config.write_text(generated.stdout)
    env = {"SHOPFLOOR_HISTORIAN": f"sqlite:{tmp_path / 'h.db'}"}
    sim = subprocess.Popen(
        [*SHOPFLOOR, "sim", "--opcua-port", opcua_port, "--modbus-port", modbus_port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        preexec_fn=default_sigint,
    )
    try:
        connect = shopfloor("connect", "--config", str(config), "--duration", "6s", env=env)
        sim.send_signal(signal.SIGINT)
        _, sim_err = sim.communicate(timeout=30)
    finally:
        sim.kill()
    assert connect.returncode == 0, connect.stderr
    assert "Traceback" not in connect.stderr + sim_err
    rows = json.loads(shopfloor("query", "--json", env=env).stdout)
    assert {row["machine"] for row in rows} == MACHINES
