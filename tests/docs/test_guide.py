"""The "Connect your own PLCs" guide (docs/integrators-guide.md), run as written against the
simulator.

Every fenced block of the guide is a step: `sh` blocks hold commands, `yaml` blocks the connectors
file, `text` blocks sample output (not run). The commands are taken from the guide and run in the
order they appear, in one temporary folder, with these substitutions and nothing else changed:

- the plant's addresses: `opc.tcp://192.168.0.10:4840` becomes the simulator's secured OPC UA
  endpoint, `modbus://10.0.0.20:502` its Modbus server, `influxdb://influx.plant.local:8086/plant`
  a fresh database on the test InfluxDB;
- `shopfloor sim` (the PLC; a subprocess of .venv/bin/shopfloor): a free port for the secured
  server, `--opcua-port`/`--modbus-port` free ports added, its events to a SQLite file; its
  `users.txt` holds `shopfloor:` and the test's password;
- `read ... PLC_PASSWORD`: the test sets that variable to the password;
- the example file in `mv pki/rejected/certs/<example>.der`: the file the error message named;
- `shopfloor connect`: `--duration` is added, so that it ends.

The `shopfloor` client commands run in this process through `shopfloor.cli.main`; `cp` and `mv`
through shutil. A block the walk does not know, or a missing one, fails
`test_the_guide_has_exactly_the_steps_walked_here`; a row of the guide's "When it fails" table
without a scenario here fails `test_each_failure_the_guide_lists`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pymodbus.client import ModbusTcpClient

from connectors.config import load_config
from connectors.opcua.pki import Pki, create_certificate
from plc_sim.spec import load_line
from plc_sim.tags import exposed_tags
from shopfloor import cli
from testbed.influxd import free_port

pytestmark = pytest.mark.timeout(120)

GUIDE = Path(__file__).parents[2] / "docs" / "integrators-guide.md"
SHOPFLOOR = Path(sys.executable).with_name("shopfloor")
PLC_URL = "opc.tcp://192.168.0.10:4840"
DRIVE_URL = "modbus://10.0.0.20:502"
HISTORIAN_URL = "influxdb://influx.plant.local:8086/plant"
USER, PASSWORD = "shopfloor", "Rehearsal-Pa55word"
SERVER_CERT = Path("plc_sim_pki/own/certs/plc_sim.der")  # where `shopfloor sim` keeps it
CONNECT_FOR = "4s"

# What the guide holds, in order, apart from sample output: the steps the walk below runs.
WALKED = [
    "shopfloor sim",
    "shopfloor certs",
    "cp",
    "read",
    "shopfloor browse",
    "mv",
    "shopfloor browse --emit-config",
    "yaml",
    "shopfloor probe",
    "yaml",
    "shopfloor check",
    "shopfloor connect",
    "shopfloor query",
]


# --- the guide, read from docs/integrators-guide.md -------------------------------------------


@dataclass(frozen=True)
class Block:
    lang: str
    text: str

    @property
    def commands(self) -> list[list[str]]:
        """Each command line (backslash continuations joined, comments dropped) as argv."""
        joined = self.text.replace("\\\n", " ")
        return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]

    @property
    def key(self) -> str:
        if self.lang != "sh":
            return self.lang
        argv = self.commands[0]
        if argv[0] != "shopfloor":
            return argv[0]
        return " ".join(argv[:2]) + (" --emit-config" if "--emit-config" in argv else "")


def guide_section() -> str:
    """The guide: its whole page, from its title on."""
    text = GUIDE.read_text(encoding="utf-8")
    return text[text.index("# Connect your own PLCs\n") :]


def guide_blocks() -> list[Block]:
    fence = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
    return [Block(m.group(1), m.group(2)) for m in fence.finditer(guide_section())]


def steps() -> Iterator[Block]:
    """The blocks to run, in order (sample output left out)."""
    return (block for block in guide_blocks() if block.lang != "text")


def failure_rows() -> list[str]:
    """The rows of the "When it fails" table (what you see | what to do)."""
    table = guide_section().split("\n## When it fails\n", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    return rows[2:]  # after the header and its rule


def test_the_guide_has_exactly_the_steps_walked_here() -> None:
    assert [block.key for block in steps()] == WALKED


# --- the PLC: `shopfloor sim` from the guide, as a subprocess --------------------------------


@dataclass
class Plc:
    folder: Path
    opcua: str  # the secured endpoint
    modbus: str

    def substitute(self, text: str, historian: str = HISTORIAN_URL) -> str:
        for example, real in ((PLC_URL, self.opcua), (DRIVE_URL, self.modbus)):
            text = text.replace(example, real)
        return text.replace(HISTORIAN_URL, historian)


@pytest.fixture(scope="module")
def plc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plc]:
    """The guide's rehearsal simulator, serving in the folder the guide's commands run in."""
    folder = tmp_path_factory.mktemp("guide")
    (folder / "users.txt").write_text(f"{USER}:{PASSWORD}\n")
    (sim,) = next(steps()).commands
    secure, opcua, modbus = free_port(), free_port(), free_port()
    sim[sim.index("--opcua-secure-port") + 1] = str(secure)
    argv = [str(SHOPFLOOR), *sim[1:], "--opcua-port", str(opcua), "--modbus-port", str(modbus)]
    argv += ["--historian", "sqlite:sim.db"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOOR_")}
    log = folder / "sim.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_listening([secure, modbus], process, log)
        yield Plc(
            folder,
            f"opc.tcp://127.0.0.1:{secure}/shopfloor/",
            f"modbus://127.0.0.1:{modbus}",
        )
    finally:
        process.terminate()  # SIGTERM: the same clean stop as Ctrl-C
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_listening(ports: list[int], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60  # two servers and their address spaces, busy machine
    waiting = list(ports)
    while waiting:
        assert process.poll() is None, f"shopfloor sim ended:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"shopfloor sim is not listening:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), timeout=1).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.2)


# --- running a step --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def shopfloor(argv: list[str]) -> Outcome:
    """`shopfloor ...` as typed, in this process."""
    assert argv[0] == "shopfloor"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv[1:])
    return Outcome(code, out.getvalue(), err.getvalue())


@pytest.fixture
def in_plc_folder(plc: Plc, monkeypatch: pytest.MonkeyPatch) -> Plc:
    monkeypatch.chdir(plc.folder)
    for name in [n for n in os.environ if n.startswith(("SHOPFLOOR_", "INFLUX_"))]:
        monkeypatch.delenv(name)
    return plc


def table_rows(out: str, first_column: str) -> list[dict[str, str]]:
    """Rows of the tables in `out` whose header starts with `first_column`, cut at the header."""
    rows, starts = [], []
    for text in out.splitlines():
        if text.strip().startswith(first_column + " "):
            starts = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", text)]
        elif starts and text.strip():
            ends = [s for _, s in starts[1:]] + [max(len(text), starts[-1][1] + 1)]
            rows.append({n: text[s:e].strip() for (n, s), e in zip(starts, ends, strict=True)})
        else:
            starts = []
    return rows


def read_drive(plc: Plc, address: int) -> list[int]:
    """Two holding registers of unit 1, read past our own code (the reference for probe)."""
    port = int(plc.modbus.rsplit(":", 1)[1])
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()
    try:
        reply = client.read_holding_registers(address, count=2, device_id=1)
        assert not reply.isError(), reply
        return list(reply.registers)
    finally:
        client.close()


def float32(words: list[int], order: str) -> float:
    high, low = words if order in ("ABCD", "BADC") else reversed(words)
    raw = struct.pack(">HH", high, low)
    if order in ("BADC", "DCBA"):
        raw = raw[1::-1] + raw[:1:-1]
    return struct.unpack(">f", raw)[0]


# --- the walk --------------------------------------------------------------------------------


def test_the_guide_from_ip_address_to_influxdb(
    in_plc_folder: Plc, influx_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plc = in_plc_folder
    spec = load_line()
    todo = list(steps())[1:]  # the simulator already runs
    done: list[str] = []

    def next_step(key: str) -> Block:
        block = todo.pop(0)
        assert block.key == key, f"after {done} the guide has {block.key}, the walk expects {key}"
        done.append(key)
        return block

    def command(key: str) -> list[str]:
        (argv,) = next_step(key).commands
        return shlex.split(plc.substitute(shlex.join(argv), influx_db_url))

    # 1. the connector's certificate, trusted by the "PLC"
    certs = shopfloor(command("shopfloor certs"))
    assert certs.code == 0 and "SHA-1 thumbprint:" in certs.out
    assert Pki(Path("pki")).own_certificate.is_file() and Path("pki/rejected/certs").is_dir()
    _, source, target = command("cp")
    shutil.copy(source, target)

    # 2. the password, in an environment variable of this shell
    assert "PLC_PASSWORD" in command("read")
    monkeypatch.setenv("PLC_PASSWORD", PASSWORD)

    # 3. browse: refused until the PLC's certificate is trusted with the `mv` the message gives
    browse = command("shopfloor browse")
    refused = shopfloor(browse)
    assert refused.code == 2 and refused.out == ""
    trust = r"it was saved to (\S+\.der)\. .* trust it: mv '\1' 'pki/trusted/certs/'"
    saved = re.search(trust, refused.err)
    assert saved is not None, refused.err
    _, example, into = command("mv")
    assert example.startswith("pki/rejected/certs/") and into == "pki/trusted/certs/"
    shutil.move(saved.group(1), into)
    assert (Path(into) / Path(saved.group(1)).name).read_bytes() == SERVER_CERT.read_bytes()
    tree = shopfloor(browse)
    assert tree.code == 0, tree.err
    opcua_tags = [t for t in exposed_tags(spec) if t.protocol == "opcua"]
    listed = {row["NODE ID"] for row in table_rows(tree.out, "NAME") if row["ACCESS"]}
    assert listed == {t.node_id for t in opcua_tags}

    # 4. the connectors file: what browse writes is what the guide shows
    emitted = shopfloor(command("shopfloor browse --emit-config"))
    assert emitted.code == 0, emitted.err
    written = yaml.safe_load(Path("plant.yaml").read_text())
    shown = yaml.safe_load(plc.substitute(next_step("yaml").text))  # an excerpt: first tags
    (entry,) = written["connectors"]
    shown_entry = shown["connectors"][0]
    assert written | {"connectors": []} == shown | {"connectors": []}
    assert entry["tags"][: len(shown_entry["tags"])] == shown_entry["tags"]
    assert entry | {"tags": []} == shown_entry | {"tags": []}
    pasteurizer = {(t.machine, t.signal) for t in opcua_tags if t.machine == "pasteurizer"}
    assert {(t["machine"], t["signal"]) for t in entry["tags"]} == pasteurizer

    # 5. probe the drive: the column the guide picks holds the value the drive has
    probe = shopfloor(command("shopfloor probe"))
    assert probe.code == 0, probe.err
    decoded = next(r for r in table_rows(probe.out, "ADDRESS") if r.get("TYPE") == "float32")
    reference = read_drive(plc, int(decoded["ADDRESS"]))
    modbus_block = next_step("yaml")
    (drive_entry,) = yaml.safe_load(modbus_block.text)
    (tag,) = drive_entry["devices"][0]["tags"]
    right = float32(reference, tag["order"])
    assert 0.5 < right < 10  # a 5.5 kW conveyor motor running
    assert float(decoded[tag["order"]]) == pytest.approx(right, rel=0.25)  # read a moment apart
    assert not 0.05 < abs(float(decoded["ABCD"])) < 100  # the wrong order is visibly wrong
    with Path("plant.yaml").open("a") as config:
        config.write(plc.substitute(modbus_block.text))
    assert [e.name for e in load_config("plant.yaml").entries] == ["line1-plc", "line1-drives"]
    tags = pasteurizer | {(drive_entry["devices"][0]["machine"], tag["signal"])}

    # 6. check: every tag fine, exit code 0
    check = shopfloor(command("shopfloor check"))
    assert check.code == 0, check.out + check.err
    rows = table_rows(check.out, "MACHINE")
    assert {(r["MACHINE"], r["SIGNAL"]) for r in rows} == tags
    assert all(r["STATUS"] == "ok" for r in rows)
    assert check.out.rstrip().endswith(f"{len(tags)} ok, all fine")

    # 7. connect into InfluxDB, then see what arrived
    connect = shopfloor([*command("shopfloor connect"), "--duration", CONNECT_FOR])
    assert connect.code == 0, connect.err
    query = shopfloor(command("shopfloor query"))
    assert query.code == 0, query.err
    stored = table_rows(query.out, "MACHINE")
    assert {(r["MACHINE"], r["SIGNAL"]) for r in stored} == tags
    assert all(r["QUALITY"] == "good" for r in stored)
    assert todo == []


# --- when it fails ---------------------------------------------------------------------------


def client_folder(
    plc: Plc, name: str, *, trust_server: bool = True, trusted_by_plc: bool = True
) -> None:
    """Work in a folder of its own with its own pki/, so that a scenario needs no other test."""
    folder = plc.folder / name
    pki = Pki(folder / "pki")
    create_certificate(pki, application_uri=f"urn:test:{name}", hostnames=["localhost"], days=2)
    if trust_server:
        shutil.copy(plc.folder / SERVER_CERT, pki.trusted)
    if trusted_by_plc:
        shutil.copy(pki.own_certificate, plc.folder / "plc_sim_pki/trusted" / f"{name}.der")
    os.chdir(folder)  # the caller's monkeypatch.chdir restores the working directory


def guide_command(plc: Plc, key: str) -> list[str]:
    (argv,) = next(block for block in steps() if block.key == key).commands
    return shlex.split(plc.substitute(shlex.join(argv)))


def guide_yaml(index: int) -> str:
    return [block.text for block in steps() if block.key == "yaml"][index]


def browse(plc: Plc, *, endpoint: str | None = None) -> Outcome:
    argv = guide_command(plc, "shopfloor browse")
    if endpoint is not None:
        argv[argv.index(plc.opcua)] = endpoint
    return shopfloor(argv)


def says(row: str, outcome: Outcome) -> None:
    """The row's message (its first `code` span, … for any text) is what the command said."""
    message = re.search(r"`([^`]+)`", row).group(1)  # type: ignore[union-attr]
    pattern = ".*?".join(re.escape(part) for part in message.split("…"))
    assert outcome.code == 2 and re.search(pattern, outcome.err), (row, outcome.err)


def untrusted_server(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client_folder(plc, "first_time", trust_server=False)
    says(row, browse(plc))


def client_refused(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client_folder(plc, "stranger", trusted_by_plc=False)
    says(row, browse(plc))
    ours = Pki(Path("pki")).own_certificate.read_bytes()
    rejected = plc.folder / "plc_sim_pki" / "rejected"  # --strict-trust files it there
    assert any(path.read_bytes() == ours for path in rejected.iterdir())


def opcua_file(plc: Plc) -> str:
    """The guide's OPC UA entry (from its --emit-config step) as a connectors file."""
    argv = guide_command(plc, "shopfloor browse --emit-config")
    argv[argv.index("--emit-config") + 1] = "guide.yaml"
    assert shopfloor(argv).code == 0
    return "guide.yaml"


def connect_for(config: str, seconds: int) -> Outcome:
    """`shopfloor connect` for a while; `err` holds what it logged."""
    argv = ["shopfloor", "connect", "--config", config, "--historian", "sqlite:guide.db"]
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("connectors").addHandler(handler)
    try:
        outcome = shopfloor([*argv, "--duration", f"{seconds}s"])
    finally:
        logging.getLogger("connectors").removeHandler(handler)
    return Outcome(outcome.code, outcome.out, outcome.err + log.getvalue())


def said_in_log(row: str, outcome: Outcome) -> None:
    message = re.search(r"`([^`]+)`", row).group(1)  # type: ignore[union-attr]
    pattern = ".*?".join(re.escape(part) for part in message.split("…"))
    assert outcome.code == 0 and re.search(pattern, outcome.err), (row, outcome.err)


def not_retried(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client_folder(plc, "not_retried")
    config = opcua_file(plc)
    monkeypatch.setenv("PLC_PASSWORD", PASSWORD + "x")
    outcome = connect_for(config, 4)
    said_in_log(row, outcome)
    assert outcome.err.count("login refused") == 1, outcome.err  # one try in 4 s, not ten


def modbus_unreachable(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (entry,) = yaml.safe_load(plc.substitute(guide_yaml(1)))
    entry["url"] = f"modbus://127.0.0.1:{free_port()}"
    Path("unreachable.yaml").write_text(yaml.safe_dump({"connectors": [entry]}))
    check = shopfloor(["shopfloor", "check", "--config", "unreachable.yaml"])
    message = re.search(r"`([^`]+)`", row).group(1)  # type: ignore[union-attr]
    pattern = ".*?".join(re.escape(part) for part in message.split("…"))
    assert check.code == 1 and re.search(pattern, check.out), (row, check.out)
    assert "pymodbus" not in check.err


def wrong_password(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLC_PASSWORD", PASSWORD + "x")
    client_folder(plc, "wrong_password")
    says(row, browse(plc))


def password_not_set(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLC_PASSWORD", raising=False)
    client_folder(plc, "no_password")
    says(row, browse(plc))


def nothing_listens(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/"
    client_folder(plc, "nothing_listens")
    says(row, browse(plc, endpoint=endpoint))


def no_such_register(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = guide_command(plc, "shopfloor probe")
    argv[argv.index("--address") + 1] = "900"
    says(row, shopfloor(argv))


def wrong_word_order(plc: Plc, row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (entry,) = yaml.safe_load(plc.substitute(guide_yaml(1)))
    entry["devices"][0]["tags"][0]["order"] = "ABCD"
    Path("wrong_order.yaml").write_text(yaml.safe_dump({"connectors": [entry]}))
    check = shopfloor(["shopfloor", "check", "--config", "wrong_order.yaml"])
    (reading,) = table_rows(check.out, "MACHINE")
    assert not 0.05 < abs(float(reading["VALUE"])) < 100, check.out  # absurd for a power
    assert "check" in row and "wrong word order" in row


Scenario = Callable[[Plc, str, pytest.MonkeyPatch], None]
SCENARIOS: dict[str, Scenario] = {
    "is not trusted; it was saved to": untrusted_server,
    "refused this connector's certificate": client_refused,
    "login refused": wrong_password,
    "is not set": password_not_set,
    "nothing listens on that host": nothing_listens,
    "(wrong port, or server down)": modbus_unreachable,
    "not retrying for": not_retried,
    "illegal data address": no_such_register,
    "wrong word order": wrong_word_order,
}


def test_each_failure_the_guide_lists_has_a_scenario_here() -> None:
    rows = failure_rows()
    matched = [[key for key in SCENARIOS if key in row] for row in rows]
    assert all(len(keys) == 1 for keys in matched), list(zip(rows, matched, strict=True))
    assert sorted(key for keys in matched for key in keys) == sorted(SCENARIOS)


@pytest.mark.parametrize("key", list(SCENARIOS))
def test_each_failure_the_guide_lists(
    key: str, in_plc_folder: Plc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLC_PASSWORD", PASSWORD)
    (row,) = [row for row in failure_rows() if key in row]
    SCENARIOS[key](in_plc_folder, row, monkeypatch)


@pytest.mark.parametrize("command", ["sim", "up"])
def test_sim_and_up_take_the_rehearsal_options(command: str) -> None:
    (argv,) = next(steps()).commands
    args = cli.build_parser().parse_args([command, *argv[2:]])
    assert (args.opcua_secure_port, args.users) == (4841, Path("users.txt"))
    assert args.strict_trust
