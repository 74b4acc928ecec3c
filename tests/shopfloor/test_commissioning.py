"""The commissioning commands (certs, browse, probe, check) against the simulator's real
servers on 127.0.0.1, called through their own argument parsers.

Each command on its own, in detail: certs, browse with --emit-config, check of the emitted file,
probe of a register pair, check of a broken file. The integrators' guide, walked as written against
the secured simulator, is tests/docs/test_guide.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Server, ua
from cryptography import x509

from connectors.config import ConfigError, load_config
from connectors.modbus.codec import DataType, WordOrder, decode
from connectors.opcua.browse import browse_tree
from connectors.opcua.security import Auth, Security
from connectors.opcua.session import open_session
from core.sample import Quality, Sample
from plc_sim.alarms import alarms_of
from plc_sim.modbus_server import ModbusServer
from plc_sim.opcua_server import OpcUaServer
from plc_sim.process import Simulator
from plc_sim.spec import UNITS, LineSpec, load_line
from plc_sim.tags import exposed_tags
from shopfloor import commissioning
from shopfloor.options import CommandError
from testbed.influxd import free_port

pytestmark = pytest.mark.timeout(60)
ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
TIMEOUT_S = 10
START_TIMEOUT_S = 40  # asyncua servers load the standard address space: slow on a busy machine


class Line:
    """The simulated line's OPC UA and Modbus servers with one published set of values,
    plus a server with a variable nobody may read and a TCP peer that never answers."""

    def __init__(self, spec: LineSpec) -> None:
        self.spec = spec
        self.sim = Simulator(spec, seed=5)
        for _ in range(60):
            self.sim.step(1.0)
        self.values = self.sim.values()
        self.opcua = OpcUaServer(
            spec, host="127.0.0.1", port=free_port(), inject=self.sim.inject, clear=self.sim.clear
        )
        self.modbus_port = free_port()
        self.modbus = ModbusServer(
            spec, host="127.0.0.1", port=self.modbus_port, on_run=self.sim.set_running
        )
        self.locked = Server()
        self.locked_endpoint = f"opc.tcp://127.0.0.1:{free_port()}/locked/"
        self.silent: asyncio.Server | None = None

    async def start(self) -> None:
        await self.opcua.start()
        await self.opcua.publish(self.values, datetime.now(UTC))
        await self.modbus.start()
        self.modbus.publish(self.values)
        await self.locked.init()
        self.locked.set_endpoint(self.locked_endpoint)
        node = await self.locked.nodes.objects.add_variable(ua.NodeId("secret", 1), "secret", 1.0)
        # asyncua does not enforce read access; a PLC answers a refused read like this
        denied = ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        await node.write_value(ua.DataValue(ua.Variant(1.0), StatusCode=denied))
        await self.locked.start()
        self.silent = await asyncio.start_server(_never_answer, "127.0.0.1", 0)

    @property
    def silent_port(self) -> int:
        assert self.silent is not None
        return self.silent.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.opcua.stop()
        await self.modbus.stop()
        await self.locked.stop()
        if self.silent is not None:
            self.silent.close()


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read()  # until the client hangs up
    writer.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line() -> AsyncIterator[Line]:
    served = Line(load_line())
    async with asyncio.timeout(START_TIMEOUT_S):
        await served.start()
    try:
        yield served
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await served.stop()


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopfloor")
    commissioning.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


async def run(parser: argparse.ArgumentParser, *argv: str) -> int:
    args = parser.parse_args(argv)
    async with asyncio.timeout(TIMEOUT_S * 2):
        return await args.handler(args)


@ON_MODULE_LOOP
async def test_certs_creates_the_pki_layout_once(
    parser: argparse.ArgumentParser, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["certs", "--application-uri", "urn:plant:shopfloor", "--host", "10.1.2.3"]
    assert await run(parser, *argv, "--host", "edge-box", "--days", "30") == 0
    cert = x509.load_der_x509_certificate((workdir / "pki/own/certs/shopfloor.der").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:plant:shopfloor"]
    assert names.get_values_for_type(x509.DNSName) == ["edge-box"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    key = workdir / "pki/own/private/shopfloor.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (workdir / "pki/trusted/certs").is_dir() and (workdir / "pki/rejected/certs").is_dir()
    assert "SHA-1 thumbprint:" in capsys.readouterr().out
    with pytest.raises(CommandError, match="already exists; pass --force"):
        await run(parser, *argv)
    first = (workdir / "pki/own/certs/shopfloor.der").read_bytes()
    assert await run(parser, *argv, "--force") == 0
    assert (workdir / "pki/own/certs/shopfloor.der").read_bytes() != first


@ON_MODULE_LOOP
async def test_browse_shows_exactly_what_the_line_file_defines(line: Line) -> None:
    client, _ = await open_session(line.opcua.endpoint, None, None, timeout_s=5)
    try:
        nodes = await browse_tree(
            client, ua.NodeId(ua.ObjectIds.ObjectsFolder), max_depth=8, timeout_s=5
        )
    finally:
        await client.disconnect()
    variables = {(n.node_id, n.data_type, n.unit, n.access) for n in nodes if n.is_variable}
    types = {"count": "UInt32", "state": "Int32", "flag": "Boolean"}
    expected = {
        (t.node_id, types.get(t.kind, "Double"), UNITS[t.unit][1], "read")
        for t in exposed_tags(line.spec)
        if t.protocol == "opcua"
    }
    assert variables == expected
    objects = {n.path for n in nodes if not n.is_variable}
    opcua_machines = {t.machine for t in exposed_tags(line.spec) if t.protocol == "opcua"}
    alarms = {("line1", "Alarms", f"{a.machine}.{a.name}") for a in alarms_of(line.spec)}
    assert objects == {("line1",), ("line1", "Simulator"), ("line1", "Alarms")} | alarms | {
        ("line1", m) for m in opcua_machines
    }


@ON_MODULE_LOOP
async def test_browse_filter_and_emitted_config_round_trip(
    line: Line, parser: argparse.ArgumentParser, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = line.opcua.endpoint
    assert await run(parser, "browse", endpoint, "--filter", "*capper*", "--policy", "None") == 0
    out = capsys.readouterr().out
    capper = [t for t in exposed_tags(line.spec) if t.machine == "capper"]
    assert f"{len(capper)} variables match '*capper*'" in out
    assert all(t.node_id in out for t in capper) and "pasteurizer" not in out

    emitted = workdir / "line.yaml"
    assert (
        await run(parser, "browse", endpoint, "--emit-config", str(emitted), "--name", "sim") == 0
    )
    config = load_config(emitted)
    (entry,) = config.entries
    assert entry.security is not None and entry.security.is_open  # written explicitly
    opcua_tags = {(t.machine, t.signal) for t in exposed_tags(line.spec) if t.protocol == "opcua"}
    assert {(t.machine, t.signal) for t in entry.tags} == opcua_tags

    (source,) = config.build_inputs()
    samples: dict[tuple[str, str], Sample] = {}

    async def emit(batch: list[Sample]) -> None:
        samples.update({(s.machine, s.signal): s for s in batch})

    task = asyncio.create_task(source.run(emit))
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while set(samples) != opcua_tags:  # noqa: ASYNC110 - the input pushes, we look
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
    for key, sample in samples.items():
        assert sample.quality is Quality.GOOD, key
        assert sample.value == pytest.approx(float(line.values[key])), key


@ON_MODULE_LOOP
async def test_emitted_config_passes_check(
    line: Line, parser: argparse.ArgumentParser, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emitted = workdir / "filler.yaml"
    args = ["browse", line.opcua.endpoint, "--filter", "*filler*", "--emit-config", str(emitted)]
    assert await run(parser, *args) == 0
    capsys.readouterr()
    assert await run(parser, "check", "--config", str(emitted)) == 0
    out = capsys.readouterr().out
    filler = [t for t in exposed_tags(line.spec) if t.machine == "filler"]
    rows = _check_rows(out)
    assert [(signal, row["STATUS"]) for (_, signal), row in rows.items()] == [
        (t.signal, "ok") for t in filler
    ]
    volume = rows[("filler", "fill_volume_ml")]
    expected = line.values[("filler", "fill_volume_ml")]
    assert float(volume["VALUE"]) == pytest.approx(expected, rel=1e-5)
    assert volume["UNIT"] == UNITS["mL"][1]  # EngineeringUnits as the server publishes them
    assert out.rstrip().endswith(f"{len(filler)} ok, all fine")


@ON_MODULE_LOOP
async def test_probe_decodes_a_word_swapped_float_and_a_counter(
    line: Line, parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"modbus://127.0.0.1:{line.modbus_port}"
    # conveyor (unit 1): power_kw float32 CDAB at holding 16; run_hours uint32 CDAB at 32
    assert await run(parser, "probe", url, "--unit", "1", "--address", "16", "--count", "2") == 0
    out = capsys.readouterr().out
    row = next(r.split() for r in out.splitlines() if r.startswith("16") and "float32" in r)
    orders = dict(zip(["ABCD", "CDAB", "BADC", "DCBA"], row[2:], strict=True))
    assert float(orders["CDAB"]) == pytest.approx(line.values[("conveyor", "power_kw")], rel=1e-6)
    raw = [int(r.split()[2]) for r in out.splitlines()[2:4]]  # the UINT16 column
    assert decode(raw, DataType.FLOAT32, WordOrder.CDAB) == pytest.approx(float(orders["CDAB"]))

    args = ["probe", url, "--address", "32", "--count", "2", "--types", "uint32"]
    assert await run(parser, *args) == 0
    row = next(r.split() for r in capsys.readouterr().out.splitlines() if "uint32" in r)
    hours = line.values[("conveyor", "run_hours")]
    assert int(row[3]) == round(hours / 0.01)  # CDAB column, scale 0.01


@ON_MODULE_LOOP
async def test_probe_reports_the_exception_and_its_meaning(
    line: Line, parser: argparse.ArgumentParser
) -> None:
    url = f"modbus://127.0.0.1:{line.modbus_port}"
    with pytest.raises(CommandError, match="Modbus exception 2: illegal data address"):
        await run(parser, "probe", url, "--unit", "1", "--address", "900", "--count", "2")


BROKEN = """\
site: demo
connectors:
  - type: opcua
    name: plc
    endpoint: {opcua}
    security: none
    timeout_s: 2
    tags:
      - {{machine: capper, signal: speed, node: "ns=2;s=line1.capper.speed_bpm"}}
      - {{machine: ghost, signal: missing, node: "ns=2;s=no.such.node"}}
      - {{machine: ghost, signal: path, node: "/Objects/2:line1/2:nothing"}}
  - type: opcua
    name: locked
    endpoint: {locked}
    security: none
    tags:
      - {{machine: vault, signal: secret, node: "ns=1;s=secret"}}
  - type: opcua
    name: gone
    endpoint: opc.tcp://127.0.0.1:{closed}/
    security: none
    timeout_s: 2
    tags:
      - {{machine: x, signal: y, node: "ns=2;s=a"}}
  - type: modbus
    name: mb
    url: modbus://127.0.0.1:{modbus}
    devices:
      - unit: 1
        machine: conveyor
        max_gap: 30
        tags:
          - {{signal: power_kw, table: holding, address: 16, type: float32, order: CDAB}}
          - {{signal: unmapped, table: holding, address: 40, type: int16}}
      - unit: 9
        machine: absent
        tags:
          - {{signal: x, table: holding, address: 0, type: int16}}
  - type: modbus
    name: mute
    url: modbus://127.0.0.1:{silent}
    timeout_s: 0.3
    devices:
      - machine: meter
        tags:
          - {{signal: v, table: input, address: 0, type: int16}}
"""


def _check_rows(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """Every tag row of `check` output, cut at the columns of its table's header."""
    rows = {}
    starts: list[tuple[str, int]] = []
    for text in out.splitlines():
        if text.strip().startswith("MACHINE"):
            starts = [(m.group(), m.start()) for m in re.finditer(r"\S+", text)]
        elif starts and text.startswith("  ") and text.strip():
            ends = [s for _, s in starts[1:]] + [len(text)]
            cells = {
                name: text[start:end].strip()
                for (name, start), end in zip(starts, ends, strict=True)
            }
            rows[(cells["MACHINE"], cells["SIGNAL"])] = cells
    return rows


@ON_MODULE_LOOP
async def test_check_names_each_kind_of_problem(
    line: Line, parser: argparse.ArgumentParser, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "broken.yaml"
    config.write_text(
        BROKEN.format(
            opcua=line.opcua.endpoint,
            locked=line.locked_endpoint,
            closed=free_port(),
            modbus=line.modbus_port,
            silent=line.silent_port,
        )
    )
    assert await run(parser, "check", "--config", str(config)) == 1
    rows = _check_rows(capsys.readouterr().out)

    def problem(machine: str, signal: str) -> str:
        return rows[(machine, signal)]["PROBLEM"]

    assert rows[("capper", "speed")]["STATUS"] == "ok"
    assert rows[("conveyor", "power_kw")]["STATUS"] == "ok"
    assert problem("ghost", "missing") == (
        "bad node id: the server has no node ns=2;s=no.such.node (BadNodeIdUnknown)"
    )
    assert problem("ghost", "path").startswith("bad node id: browse path resolves to no node")
    assert problem("vault", "secret") == (
        "access denied (BadUserAccessDenied): this login may not read the node"
    )
    assert problem("x", "y") == (
        "cannot connect: connection refused: nothing listens on that host and port"
    )
    assert problem("conveyor", "unmapped") == (
        "Modbus exception 2: illegal data address (an address in the request does not exist on "
        "the device)"
    )
    assert problem("absent", "x") == "Modbus exception 11: gateway target device failed to respond"
    assert problem("meter", "v") == "timeout: unit 1 did not answer within 0.3 s"


@ON_MODULE_LOOP
async def test_check_of_a_file_with_config_errors_says_where(
    parser: argparse.ArgumentParser, workdir: Path
) -> None:
    config = workdir / "typo.yaml"
    config.write_text(
        "connectors:\n  - type: opcua\n    name: p\n    endpoint: opc.tcp://h:4840/\n"
        "    security: {policy: Basic999, mode: Sign}\n    tags: []\n"
    )
    with pytest.raises(ConfigError, match=r"typo.yaml:5: connectors\[0\].security: unknown"):
        await run(parser, "check", "--config", str(config))


def test_emitted_paths_are_relative_to_the_emitted_file(tmp_path: Path) -> None:
    """--pki and --password-file are typed relative to the working directory; the file written
    elsewhere names them relative to itself, as the loader reads them."""
    security = Security(policy="Basic256Sha256", mode="Sign", pki=Path("pki"))
    auth = Auth(username="u", password_file=Path("secrets/plc"))
    sec, login = commissioning._config_security(security, auth, Path("configs/plant"))
    assert sec["pki"] == "../../pki" and login == {
        "username": "u",
        "password_file": "../../secrets/plc",
    }
    pinned = Security(policy="Basic256Sha256", mode="Sign", pki=tmp_path / "pki")
    sec, login = commissioning._config_security(pinned, None, Path("configs"))
    assert sec["pki"] == str(tmp_path / "pki") and login is None
