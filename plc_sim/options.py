"""Command-line options of the simulator that more than one command offers, defined once.

`python -m plc_sim`, `shopfloor sim` and `shopfloor up` all offer the same options for the
secured OPC UA server and for misbehaving Modbus devices, so that an integrator can rehearse
against a locked-down or slow "PLC" with any of them. Passwords come from a users
file or from environment variables, never from the command line (it shows in `ps` and in shell
history).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Literal, TypedDict

from plc_sim.chaos import Chaos
from plc_sim.modbus_server import DeviceFault, parse_device_fault
from plc_sim.opcua_server import SecureEndpoint, ensure_server_certificate, load_users

USER_ENV, PASSWORD_ENV = "SHOPFLOOR_SIM_USER", "SHOPFLOOR_SIM_PASSWORD"


class SecureOptionsError(ValueError):
    """The secured-server options do not add up; the message says which and how to fix it."""


def add_secure_options(parser: argparse.ArgumentParser) -> None:
    """--opcua-secure-port and what the secured server needs: certificate folder and logins."""
    group = parser.add_argument_group(
        "secured OPC UA server (signed and encrypted sessions with a login, like a locked-down "
        f"PLC; users from --users or ${USER_ENV} + ${PASSWORD_ENV})"
    )
    group.add_argument(
        "--opcua-secure-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the secured OPC UA server on this port too (default: 0, none)",
    )
    group.add_argument(
        "--server-pki",
        type=Path,
        default=Path("plc_sim_pki"),
        metavar="DIR",
        help="where the server's certificate is kept, created on first use (default: plc_sim_pki)",
    )
    group.add_argument("--users", type=Path, metavar="FILE", help="file of name:password lines")
    group.add_argument(
        "--user-certs", type=Path, metavar="DIR", help="folder of user certificates to accept"
    )
    group.add_argument(
        "--trusted-clients",
        type=Path,
        metavar="DIR",
        help="folder of client certificates to accept, read at each connection; others are "
        "refused and saved to rejected/ beside it (default: any client certificate)",
    )
    group.add_argument(
        "--strict-trust",
        action="store_true",
        help="trust only client certificates in <server-pki>/trusted, saving refused ones to "
        "<server-pki>/rejected, as a real PLC does (short for --trusted-clients "
        "<server-pki>/trusted)",
    )


def secure_endpoint(args: argparse.Namespace) -> SecureEndpoint | None:
    """The secured server the options ask for, its certificate made if missing (blocking I/O)."""
    if not args.opcua_secure_port:
        return None
    users: dict[str, str] = {}
    if args.users is not None:
        try:
            users.update(load_users(args.users.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise SecureOptionsError(f"--users {args.users}: {exc}") from None
    name, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if name and password:
        users[name] = password
    if not users and args.user_certs is None:
        raise SecureOptionsError(
            "the secured endpoint needs a login: --users FILE (name:password lines), "
            f"{USER_ENV} and {PASSWORD_ENV}, or --user-certs DIR"
        )
    cert, key = ensure_server_certificate(args.server_pki, args.host)
    trusted = args.trusted_clients
    if trusted is None and args.strict_trust:
        trusted = args.server_pki / "trusted"
    if trusted is not None:  # where to copy a client certificate to trust it
        trusted.mkdir(parents=True, exist_ok=True)
    return SecureEndpoint(
        port=args.opcua_secure_port,
        certificate=cert,
        private_key=key,
        users=users,
        user_certificates=args.user_certs,
        trusted_clients=trusted,
        rejected_clients=None if trusted is None else trusted.parent / "rejected",
    )


def describe(secure: SecureEndpoint, host: str) -> str:
    """Where the secured server listens and the certificate thumbprint a client will see."""
    digest = hashlib.sha1(secure.certificate.read_bytes(), usedforsecurity=False).hexdigest()
    thumbprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()
    return (
        f"OPC UA (secured, login): opc.tcp://{host}:{secure.port}/shopfloor/; server "
        f"certificate {secure.certificate} (SHA-1 {thumbprint})"
    )


def add_device_fault_option(parser: argparse.ArgumentParser) -> None:
    """--modbus-device-fault: one Modbus device answers late or with an exception."""
    parser.add_argument(
        "--modbus-device-fault",
        action="append",
        default=[],
        type=_device_fault,
        metavar="DEVICE:delay=S,exception=C",
        help="make one Modbus device (unit id or machine name) answer S seconds late and/or "
        "with exception code C, the others unaffected; repeatable "
        "(e.g. air_compressor:delay=2 or 3:exception=6)",
    )


def device_faults(args: argparse.Namespace) -> dict[int | str, DeviceFault]:
    """The Modbus device faults the options ask for, keyed by unit id or machine name."""
    return dict(args.modbus_device_fault)


def _device_fault(text: str) -> tuple[str, DeviceFault]:
    try:
        return parse_device_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_behaviour_options(parser: argparse.ArgumentParser) -> None:
    """--opcua-timestamps and --chaos: how real the simulated PLCs behave."""
    parser.add_argument(
        "--opcua-timestamps",
        choices=["change", "tick"],
        default="change",
        help="OPC UA source timestamps change only with the value, as on real servers "
        "(change, the default), or on every tick (tick, the old behaviour)",
    )
    parser.add_argument(
        "--chaos",
        type=int,
        metavar="SEED",
        help="chaos mode: every 20-60 s one fault for 2-8 s (dropped OPC UA sessions, a stalled "
        "or restarted OPC UA server, dropped Modbus connections, late answers, exception "
        "bursts), on a schedule fixed by SEED",
    )


class Behaviour(TypedDict):
    """run_simulator's keyword arguments that `add_behaviour_options`' options set."""

    opcua_timestamps: Literal["change", "tick"]
    chaos: Chaos | None


def behaviour(args: argparse.Namespace) -> Behaviour:
    """run_simulator's keyword arguments for `add_behaviour_options`' options."""
    chaos = None if args.chaos is None else Chaos(args.chaos)
    return {"opcua_timestamps": args.opcua_timestamps, "chaos": chaos}
