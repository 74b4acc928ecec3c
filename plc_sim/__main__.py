"""`python -m plc_sim`: serve a simulated line on its own and print fault events."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from plc_sim.faults import FaultEvent
from plc_sim.options import (
    SecureOptionsError,
    add_behaviour_options,
    add_device_fault_option,
    add_secure_options,
    behaviour,
    describe,
    device_faults,
    secure_endpoint,
)
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpecError, load_line


def _print_event(event: FaultEvent, wall_ts_ns: int) -> None:
    print(f"[t={event.time_s:8.1f}s] {event.text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plc_sim", description=__doc__)
    parser.add_argument("--line", type=Path, help="line file (default: the food & beverage line)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address both servers listen on")
    parser.add_argument("--opcua-port", type=int, default=4840, help="0: no OPC UA server")
    parser.add_argument("--modbus-port", type=int, default=5020, help="0: no Modbus server")
    parser.add_argument("--tick-s", type=float, help="wall seconds per tick (default: file's)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated s per wall s")
    add_secure_options(parser)
    add_device_fault_option(parser)
    add_behaviour_options(parser)
    args = parser.parse_args(argv)
    try:
        spec = load_line(args.line)
        secure = secure_endpoint(args)
    except (LineSpecError, SecureOptionsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    opcua = (args.host, args.opcua_port) if args.opcua_port else None
    modbus = (args.host, args.modbus_port) if args.modbus_port else None
    if opcua:
        print(f"OPC UA: opc.tcp://{args.host}:{args.opcua_port}/shopfloor/", flush=True)
    if opcua and secure:
        print(describe(secure, args.host), flush=True)
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
        modbus_faults=device_faults(args),
        **behaviour(args),
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the runner has closed the servers
        try:
            asyncio.run(coroutine)
        except ValueError as exc:  # a --modbus-device-fault for a device the line does not have
            print(exc, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
