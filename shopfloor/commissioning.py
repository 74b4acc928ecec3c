"""Commissioning commands: certs, browse, probe, check — from "IP address" to a working config.

    shopfloor certs                      the connector's OPC UA certificate in pki/
    shopfloor browse opc.tcp://...       the PLC's variables as a tree; --emit-config writes a file
    shopfloor probe modbus://...         raw registers decoded in every type and word order
    shopfloor check --config FILE        every tag read once: ok, or the exact problem

Each prints plain tables on stdout and exits non-zero when something needs fixing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from connectors.check import ConnectorCheck, TagCheck
from connectors.config import load_config, parse_config
from connectors.modbus.codec import DataType
from connectors.modbus.config import Table
from connectors.modbus.probe import (
    NUMERIC_TYPES,
    ORDERS,
    ProbeError,
    format_value,
    read_block,
    readings,
)
from connectors.opcua.browse import BrowsedNode, browse_tree, connector_entry, select
from connectors.opcua.client import quiet_asyncua_loggers
from connectors.opcua.config import check_endpoint
from connectors.opcua.nodeid import parse_node_id
from connectors.opcua.pki import (
    DEFAULT_VALIDITY_DAYS,
    Pki,
    PkiError,
    application_uri,
    create_certificate,
    default_application_uri,
    thumbprint,
)
from connectors.opcua.resolve import to_ua_nodeid
from connectors.opcua.security import POLICIES, Auth, Security
from connectors.opcua.session import SESSION_FAILURES, close_session, explain, open_session
from shopfloor.options import CommandError, command


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# --- certs ---------------------------------------------------------------------------------


async def certs(args: argparse.Namespace) -> int:
    """Create the connector's application instance certificate and key in the pki folder."""
    pki = Pki(Path(args.pki))
    uri = args.application_uri or default_application_uri()
    hosts = args.host or [socket.gethostname(), "localhost"]
    try:
        cert = await asyncio.to_thread(
            create_certificate,
            pki,
            application_uri=uri,
            hostnames=hosts,
            days=args.days,
            force=args.force,
        )
    except PkiError as exc:
        raise CommandError(str(exc)) from None
    print(f"certificate: {pki.own_certificate}")
    print(f"private key: {pki.own_private_key} (readable only by you; never share it)")
    print(f"application URI: {application_uri(cert)}")
    print(f"host names: {', '.join(hosts)}")
    print(f"valid: {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}")
    print(f"SHA-1 thumbprint: {thumbprint(cert)}")
    print(
        f"next: 1. trust {pki.own_certificate} on the PLC (its OPC UA server's trusted clients)\n"
        f"      2. put the PLC's server certificate into {pki.trusted}/ - or connect once "
        f"(shopfloor browse / check): it is saved to {pki.rejected}/ to review and move"
    )
    return 0


def _add_certs(sub: Any) -> None:
    parser = command(
        sub,
        "certs",
        certs,
        "Create the connectors' OPC UA application instance certificate and key (pki/ folder "
        "with own/, trusted/ and rejected/).",
    )
    parser.add_argument("--pki", default="pki", help="the pki folder (default: ./pki)")
    parser.add_argument(
        "--application-uri", help="ApplicationUri (default: urn:<this host>:shopfloor:connector)"
    )
    parser.add_argument(
        "--host",
        action="append",
        help="host name or IP address for the certificate (repeatable; default: this host's "
        "name and localhost)",
    )
    parser.add_argument(
        "--days", type=int, default=DEFAULT_VALIDITY_DAYS, help="validity (default: 730)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing certificate")


# --- OPC UA connection options (browse) ----------------------------------------------------


def _add_opcua_login(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security and login (as in a connectors file)")
    group.add_argument(
        "--policy", default="None", help=f"security policy: {', '.join(POLICIES)} (default: None)"
    )
    group.add_argument("--mode", choices=["Sign", "SignAndEncrypt"], help="message security")
    group.add_argument("--pki", default="pki", help="the pki folder (default: ./pki)")
    group.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="trust an unknown server certificate (saved to pki/trusted)",
    )
    group.add_argument("--username", help="log in as this user")
    group.add_argument("--password-env", metavar="VAR", help="environment variable with password")
    group.add_argument("--password-file", metavar="FILE", help="file holding the password")
    group.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per request (default: 5)"
    )


def _model(model: type[BaseModel], data: dict[str, Any], what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise CommandError(f"{what}: {problems}") from None


def _security_and_auth(args: argparse.Namespace) -> tuple[Security, Auth | None]:
    security = _model(
        Security,
        {
            "policy": args.policy,
            "mode": args.mode,
            "pki": args.pki,
            "trust_on_first_use": args.trust_on_first_use,
        },
        "--policy/--mode",
    )
    login = {
        key: value
        for key, value in (
            ("username", args.username),
            ("password_env", args.password_env),
            ("password_file", args.password_file),
        )
        if value is not None
    }
    auth = _model(Auth, login, "--username/--password-*") if login else None
    return security, auth


def _config_security(
    security: Security, auth: Auth | None, folder: Path
) -> tuple[Any, dict[str, Any] | None]:
    """The `security:` and `auth:` values of a config file in `folder` that connects the same
    way: paths given on the command line are rewritten relative to that folder (the loader
    reads them from there)."""
    if security.is_open:
        sec: Any = "none"
    else:
        pki = _relative_to(security.pki, folder)
        sec = {"policy": security.policy, "mode": security.mode, "pki": pki}
    if auth is None:
        return sec, None
    login = auth.model_dump(mode="json", exclude_none=True)
    if auth.password_file is not None:
        login["password_file"] = _relative_to(auth.password_file, folder)
    return sec, login


def _relative_to(path: Path, folder: Path) -> str:
    return str(path) if path.is_absolute() else os.path.relpath(path, folder)


# --- browse --------------------------------------------------------------------------------


async def browse(args: argparse.Namespace) -> int:
    """Show the server's objects and variables as a tree; optionally write a config for them."""
    quiet_asyncua_loggers()
    try:
        endpoint = check_endpoint(args.endpoint)
        start = to_ua_nodeid(parse_node_id(args.start), [])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    security, auth = _security_and_auth(args)
    if args.emit_config and not args.force and await asyncio.to_thread(_exists, args.emit_config):
        raise CommandError(
            f"{args.emit_config} exists; pass --force to replace it (anything added to it by "
            "hand is lost), or give another file"
        )
    try:
        client, notes = await open_session(endpoint, security, auth, timeout_s=args.timeout)
    except SESSION_FAILURES as exc:
        raise CommandError(
            f"{endpoint}: {explain(exc, timeout_s=args.timeout, auth=auth)}"
        ) from None
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        nodes = await browse_tree(
            client,
            start,
            max_depth=args.depth,
            timeout_s=args.timeout,
            standard_nodes=args.all_namespaces,
        )
    except SESSION_FAILURES as exc:
        raise CommandError(
            f"{endpoint}: {explain(exc, timeout_s=args.timeout, auth=auth)}"
        ) from None
    finally:
        await close_session(client, args.timeout)
    chosen = select(nodes, args.filter)
    variables = [n for n in chosen if n.is_variable]
    if chosen:
        print(_tree(chosen))
    print(f"{len(variables)} variables" + (f" match {args.filter!r}" if args.filter else ""))
    if args.emit_config:
        await asyncio.to_thread(_emit_config, args, endpoint, security, auth, variables)
    return 0 if variables else 1


def _exists(path: str) -> bool:
    return Path(path).exists()


def _tree(nodes: Sequence[BrowsedNode]) -> str:
    rows = [("NAME", "NODE ID", "DATA TYPE", "UNIT", "ACCESS")]
    for node in nodes:
        name = "  " * node.depth + node.browse_name
        rows.append((name, node.node_id, node.data_type, node.unit, node.access))
    return table(rows)


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as the examples of the integrators' guide do, so that
    an entry copied from there can be appended to the file as it is."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _emit_config(
    args: argparse.Namespace,
    endpoint: str,
    security: Security,
    auth: Auth | None,
    variables: list[BrowsedNode],
) -> None:
    path = Path(args.emit_config)
    sec, login = _config_security(security, auth, path.parent)
    name = args.name or (urlsplit(endpoint).hostname or "plc").replace(".", "-")
    entry, skipped = connector_entry(
        variables, name=name, endpoint=endpoint, security=sec, auth=login
    )
    if not entry["tags"]:
        raise CommandError(
            "no readable variable of a stored type to write a config for; widen --filter"
        )
    header = (
        f"# Connectors file written by `shopfloor browse {endpoint} --emit-config`.\n"
        "# machine = the parent object's browse name, signal = the variable's; rename freely.\n"
        f"# Check it with: shopfloor check --config {args.emit_config}\n"
    )
    text = header + yaml.dump(
        {"site": args.site, "line": args.line, "connectors": [entry]},
        Dumper=_IndentedDumper,
        sort_keys=False,
    )
    parse_config(text, path)  # what we write must load
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}: {len(entry['tags'])} tags", file=sys.stderr)
    for node in skipped:
        why = f"{node.data_type} is not stored" if not node.stored else f"access {node.access}"
        print(f"left out {node.node_id}: {why}", file=sys.stderr)


def _add_browse(sub: Any) -> None:
    parser = command(
        sub,
        "browse",
        browse,
        "Show an OPC UA server's objects and variables (node id, browse name, data type, unit, "
        "access level) as a tree; --emit-config writes a connectors file for them.",
    )
    parser.add_argument("endpoint", help="opc.tcp://host:port[/path]")
    parser.add_argument(
        "--from", dest="start", default="i=85", help="start node id (default: i=85, Objects)"
    )
    parser.add_argument("--depth", type=int, default=8, help="levels to descend (default: 8)")
    parser.add_argument(
        "--filter",
        metavar="GLOB",
        help="only variables whose path or node id matches, e.g. '*temp*'",
    )
    parser.add_argument(
        "--all-namespaces", action="store_true", help="include namespace 0 (the Server object)"
    )
    parser.add_argument("--emit-config", metavar="FILE", help="write a connectors file here")
    parser.add_argument(
        "--force", action="store_true", help="let --emit-config replace an existing file"
    )
    parser.add_argument("--name", help="connector name in that file (default: from the host)")
    parser.add_argument("--site", default="default", help="site in that file (default: default)")
    parser.add_argument("--line", default="line1", help="line in that file (default: line1)")
    _add_opcua_login(parser)


# --- probe ---------------------------------------------------------------------------------


async def probe(args: argparse.Namespace) -> int:
    """Read registers once and print them raw and decoded every way."""
    try:
        table_kind = Table(args.table)
        types = _types(args.types)
        registers = await read_block(
            args.url,
            unit=args.unit,
            table=table_kind,
            address=args.address,
            count=args.count,
            timeout_s=args.timeout,
        )
    except (ValueError, ProbeError) as exc:
        raise CommandError(str(exc)) from None
    print(
        f"{args.url} unit {args.unit} {table_kind} {args.address}..{args.address + args.count - 1}"
    )
    if table_kind.holds_bits:
        print(
            table(
                [("ADDRESS", "VALUE")]
                + [(str(args.address + i), str(v)) for i, v in enumerate(registers)]
            )
        )
        return 0
    raw = [("ADDRESS", "HEX", "UINT16", "INT16", "BINARY")]
    for i, word in enumerate(registers):
        signed = word - 0x10000 if word & 0x8000 else word
        raw.append((str(args.address + i), f"0x{word:04X}", str(word), str(signed), f"{word:016b}"))
    print(table(raw))
    print()
    decoded = [("ADDRESS", "TYPE", *[order.value for order in ORDERS])]
    for reading in readings(registers, args.address, types):
        values = [format_value(v) for v in reading.values]
        decoded.append((str(reading.address), reading.dtype.value, *values))
    print(table(decoded))
    print(
        "\npick the row whose value matches the device's display; write its address, type and "
        "order (column) into the connectors file"
    )
    return 0


def _types(text: str | None) -> tuple[DataType, ...]:
    if text is None:
        return NUMERIC_TYPES
    chosen = []
    for name in text.split(","):
        try:
            dtype = DataType(name.strip().lower())
        except ValueError:
            dtype = None
        if dtype not in NUMERIC_TYPES:
            names = ", ".join(t.value for t in NUMERIC_TYPES)
            raise ValueError(f"--types: unknown type {name!r}; use some of {names}")
        chosen.append(dtype)
    return tuple(chosen)


def _add_probe(sub: Any) -> None:
    parser = command(
        sub,
        "probe",
        probe,
        "Read Modbus registers once and show them raw and decoded as every data type in every "
        "word order, side by side.",
    )
    parser.add_argument("url", help="modbus://host[:port] or modbus+rtu://host:port")
    parser.add_argument("--unit", type=int, default=1, help="unit id (default: 1)")
    parser.add_argument("--address", type=int, required=True, help="0-based first address")
    parser.add_argument("--count", type=int, required=True, help="registers (or bits) to read")
    parser.add_argument(
        "--table",
        default="holding",
        choices=[t.value for t in Table],
        help="which table (default: holding)",
    )
    parser.add_argument("--types", help="only these types, e.g. float32,uint32")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default: 2)")


# --- check ---------------------------------------------------------------------------------


async def check(args: argparse.Namespace) -> int:
    """Read every tag of a connectors file once; exit 0 only if all are fine."""
    config = load_config(args.config)
    entries = [e for e in config.entries if args.connector in (None, e.name)]
    if not entries:
        raise CommandError(f"no connector named {args.connector!r} in {args.config}")
    results = await config.check(entries)
    for result in results:
        print(_report(result))
        print()
    print(_summary(results))
    return 0 if all(r.ok for r in results) else 1


def _report(result: ConnectorCheck) -> str:
    lines = [f"{result.name}  {result.endpoint}"]
    lines += [f"  note: {note}" for note in result.notes]
    rows: list[tuple[str, ...]] = [
        ("MACHINE", "SIGNAL", "ADDRESS", "STATUS", "VALUE", "UNIT", "PROBLEM")
    ]
    rows += [_row(tag) for tag in result.tags]
    lines.append(table(rows, indent="  "))
    return "\n".join(lines)


def _row(tag: TagCheck) -> tuple[str, ...]:
    value = "-" if tag.value is None else repr(tag.value)  # exactly as stored
    if tag.text is not None:
        value = tag.text if tag.value is None else f"{value} {tag.text}"
    status = "ok" if tag.ok else "BAD"
    return (tag.machine, tag.signal, tag.address, status, value, tag.unit, tag.problem)


def _summary(results: Sequence[ConnectorCheck]) -> str:
    tags = [tag for result in results for tag in result.tags]
    bad = sum(not tag.ok for tag in tags)
    verdict = "all fine" if not bad else f"{bad} need attention"
    return (
        f"summary: {len(tags)} tags on {len(results)} connectors: {len(tags) - bad} ok, {verdict}"
    )


def _add_check(sub: Any) -> None:
    parser = command(
        sub,
        "check",
        check,
        "Connect to every endpoint of a connectors file and read every tag once: a table per "
        "connector (value and unit, or the exact problem), then a summary. Exit code 0 only "
        "when every tag is fine.",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the connectors file")
    parser.add_argument("--connector", metavar="NAME", help="only this connector")


def register(sub: Any) -> None:
    """Add the commissioning commands to the `shopfloor` command line."""
    _add_certs(sub)
    _add_browse(sub)
    _add_probe(sub)
    _add_check(sub)
