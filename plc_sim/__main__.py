"""`python -m plc_sim`: serve a simulated line on its own and print fault events."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from plc_sim.faults import FaultEvent
from plc_sim.opcua_server import SecureEndpoint, ensure_server_certificate, load_users
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpecError, load_line


def _print_event(event: FaultEvent, wall_ts_ns: int) -> None:
    print(f"[t={event.time_s:8.1f}s] {event.text}", flush=True)


class _UsageError(Exception):
    """A command-line mistake; the message says which and how to fix it."""


def _secure_endpoint(args: argparse.Namespace) -> SecureEndpoint | None:
    """The secured OPC UA server the options ask for; users from --users FILE and/or
    SHOPFLOOR_SIM_USER + SHOPFLOOR_SIM_PASSWORD (never from the command line)."""
    if not args.opcua_secure_port:
        return None
    users: dict[str, str] = {}
    if args.users is not None:
        try:
            users.update(load_users(args.users.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise _UsageError(f"--users {args.users}: {exc}") from None
    name, password = os.environ.get("SHOPFLOOR_SIM_USER"), os.environ.get("SHOPFLOOR_SIM_PASSWORD")
    if name and password:
        users[name] = password
    if not users and args.user_certs is None:
        raise _UsageError(
            "the secured endpoint needs a login: --users FILE (name:password lines), "
            "SHOPFLOOR_SIM_USER and SHOPFLOOR_SIM_PASSWORD, or --user-certs DIR"
        )
    cert, key = ensure_server_certificate(args.pki, args.host)
    print(f"OPC UA server certificate: {cert} (trust it in the client's pki)", flush=True)
    return SecureEndpoint(
        port=args.opcua_secure_port,
        certificate=cert,
        private_key=key,
        users=users,
        user_certificates=args.user_certs,
        trusted_clients=args.trusted_clients,
    )


def _add_security_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--opcua-secure-port",
        type=int,
        default=0,
        help="port of the secured OPC UA server (signed/encrypted, login); 0: none",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        default=Path("plc_sim_pki"),
        help="where the server certificate is kept (created on first use)",
    )
    parser.add_argument("--users", type=Path, help="file of name:password lines")
    parser.add_argument("--user-certs", type=Path, help="folder of user certificates to accept")
    parser.add_argument(
        "--trusted-clients",
        type=Path,
        help="folder of client certificates to accept (default: any client certificate)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plc_sim", description=__doc__)
    parser.add_argument("--line", type=Path, help="line file (default: the food & beverage line)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address both servers listen on")
    parser.add_argument("--opcua-port", type=int, default=4840, help="0: no OPC UA server")
    parser.add_argument("--modbus-port", type=int, default=5020, help="0: no Modbus server")
    parser.add_argument("--tick-s", type=float, help="wall seconds per tick (default: file's)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated s per wall s")
    _add_security_options(parser)
    args = parser.parse_args(argv)
    try:
        spec = load_line(args.line)
        secure = _secure_endpoint(args)
    except (LineSpecError, _UsageError) as exc:
        print(exc, file=sys.stderr)
        return 2
    opcua = (args.host, args.opcua_port) if args.opcua_port else None
    modbus = (args.host, args.modbus_port) if args.modbus_port else None
    if opcua:
        print(f"OPC UA: opc.tcp://{args.host}:{args.opcua_port}/shopfloor/", flush=True)
    if opcua and secure:
        print(f"OPC UA (secured): opc.tcp://{args.host}:{secure.port}/shopfloor/", flush=True)
    if modbus:
        print(f"Modbus TCP: {args.host}:{args.modbus_port}", flush=True)
    coroutine = run_simulator(
        spec,
        seed=args.seed,
        opcua=opcua,
        modbus=modbus,
        tick_s=args.tick_s,
        on_event=_print_event,
        speed=args.speed,
        opcua_secure=secure if opcua else None,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the runner has closed the servers
        asyncio.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
