"""The line's commands: up, sim, query, sim-config; wired from the parts."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from connectors.config import parse_config
from core.sample import Point
from core.schema import EVENTS, EventKind
from core.storage import Reading
from core.units import unit_of
from delivery.writer import HistorianWriter, Writer
from plc_sim.faults import FaultEvent
from plc_sim.opcua_server import SecureEndpoint
from plc_sim.options import (
    SecureOptionsError,
    add_behaviour_options,
    add_device_fault_option,
    add_secure_options,
    behaviour,
    device_faults,
    secure_endpoint,
)
from plc_sim.options import describe as describe_secure_endpoint
from plc_sim.process import WARMUP_S
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpec, LineSpecError, load_line
from shopfloor.connect import (
    add_publish,
    add_spool,
    build_agent,
    opened,
    run_spooled,
    writer_for,
)
from shopfloor.durations import parse_duration
from shopfloor.options import (
    CommandError,
    add_detection_options,
    add_duration,
    add_historian,
    add_line,
    command,
    run_for,
)
from shopfloor.simconfig import render_sim_connectors, sim_connectors

USER_ERRORS = (LineSpecError,)  # a line file (--line) that cannot be used: its message, exit 2


async def up(args: argparse.Namespace) -> int:
    """Simulator, connectors, historian and anomaly detection in one process, with a live
    status."""
    spec = load_line(args.line)
    config = parse_config(
        yaml.safe_dump(sim_connectors(spec, args.host, args.opcua_port, args.modbus_port)),
        Path("<generated for the simulated line>"),
    )
    from shopfloor.line_detection import LineDetection  # scikit-learn: only `up` needs it

    ready = asyncio.Event()
    async with opened(args) as historian:
        detection = LineDetection(args, spec, historian)
        await detection.prepare()
        writer = await writer_for(args, historian, keep_historian=True)
        agent, status = build_agent(config, writer, args.historian_name, detection.anomalies)

        async def connectors_once_listening() -> None:
            await ready.wait()
            await agent.run()

        await run_spooled(
            args,
            agent,
            _simulate(spec, args, writer, ready),
            connectors_once_listening(),
            detection.run(ready),
            status.run(),
        )
        print(status.summary())
        if detection.summary():
            print(detection.summary())
    return 0


async def sim(args: argparse.Namespace) -> int:
    """Only the simulated PLCs; fault ground truth still goes to the historian."""
    spec = load_line(args.line)
    async with opened(args) as historian:
        writer = HistorianWriter(historian)
        print(
            f"simulating {spec.line}: OPC UA on opc.tcp://{args.host}:{args.opcua_port}"
            f"/shopfloor/, Modbus TCP on {args.host}:{args.modbus_port}; Ctrl-C stops",
            file=sys.stderr,
        )
        await run_for(args.duration, _simulate(spec, args, writer), writer.run())
    return 0


async def _simulate(
    spec: LineSpec,
    args: argparse.Namespace,
    writer: Writer,
    ready: asyncio.Event | None = None,
) -> None:
    """The simulator with its servers; a port in use is a user error, not a crash."""
    ports = [
        ("OPC UA", args.opcua_port, "--opcua-port"),
        ("Modbus", args.modbus_port, "--modbus-port"),
    ]
    if args.opcua_secure_port:
        ports.append(("secured OPC UA", args.opcua_secure_port, "--opcua-secure-port"))
    for what, port, option in ports:
        _check_port_free(args.host, port, what, option)
    secure = await asyncio.to_thread(sim_secure_endpoint, args)
    if secure is not None:
        print(describe_secure_endpoint(secure, args.host), file=sys.stderr)
    try:
        await run_simulator(
            spec,
            seed=args.seed,
            opcua=(args.host, args.opcua_port),
            modbus=(args.host, args.modbus_port),
            on_event=_event_writer(spec, writer),
            ready=ready,
            opcua_secure=secure,
            warmup_s=WARMUP_S,
            modbus_faults=device_faults(args),
            **behaviour(args),
        )
    except ValueError as exc:  # a --modbus-device-fault for a device the line does not have
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(
            f"cannot serve the simulated PLCs on {args.host} (OPC UA port {args.opcua_port}, "
            f"Modbus port {args.modbus_port}): {exc.strerror or exc}"
        ) from None


def _check_port_free(host: str, port: int, what: str, option: str) -> None:
    """Fail before any server starts (and logs a traceback of its own) if a port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"the {what} port {host}:{port} is not available ({exc.strerror}); is another "
                f"simulator running? Pick another with {option}"
            ) from None


async def query(args: argparse.Namespace) -> int:
    """Latest value per machine and signal, as a table or JSON."""
    since_ns = time.time_ns() - int(args.since * 1e9) if args.since else None
    async with opened(args) as historian:
        readings = await historian.latest(
            machine=args.machine, signal=args.signal, since_ns=since_ns
        )
    readings.sort(key=lambda r: (r.line, r.machine, r.signal))
    if args.json:
        print(json.dumps([_as_json(r) for r in readings], indent=2))
    elif readings:
        print(_table(readings))
    else:
        print(f"no data in {args.historian_name} for these filters", file=sys.stderr)
        return 1
    return 0


async def sim_config(args: argparse.Namespace) -> int:
    """Print the connectors file for a simulated line (what `up` runs internally)."""
    spec = load_line(args.line)
    source = args.line or "the default food-and-beverage line"
    print(render_sim_connectors(spec, source, args.host, args.opcua_port, args.modbus_port), end="")
    return 0


def _event_writer(spec: LineSpec, writer: Writer) -> Callable[[FaultEvent, int], Awaitable[None]]:
    """Injected faults become `events` points: the ground truth that detection is scored on."""

    async def write(event: FaultEvent, ts_ns: int) -> None:
        await writer.put_points(
            [
                Point(
                    EVENTS.name,
                    {
                        "site": spec.site,
                        "line": spec.line,
                        "machine": event.machine,
                        "kind": EventKind.FAULT.value,
                    },
                    {"text": event.text, "active": event.active},
                    ts_ns,
                )
            ]
        )

    return write


def _as_json(reading: Reading) -> dict[str, object]:
    return {
        "line": reading.line,
        "machine": reading.machine,
        "signal": reading.signal,
        "value": reading.value if math.isfinite(reading.value) else None,
        "text": reading.text,
        "unit": unit_of(reading.signal),
        "quality": reading.quality.name.lower(),
        "time": _iso(reading.ts),
    }


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _shown(reading: Reading) -> str:
    """A reading's value exactly as stored: the number, the text in quotes, or both (an
    enumeration); '-' for none."""
    parts = [repr(reading.value)] if math.isfinite(reading.value) else []
    if reading.text is not None:
        parts.append(json.dumps(reading.text, ensure_ascii=False))
    return " ".join(parts) or "-"


def _table(readings: list[Reading]) -> str:
    rows = [("MACHINE", "SIGNAL", "VALUE", "UNIT", "QUALITY", "TIME (UTC)")]
    for r in readings:
        value = _shown(r)
        rows.append(
            (r.machine, r.signal, value, unit_of(r.signal), r.quality.name.lower(), _iso(r.ts))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def add_sim_endpoints(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the simulated PLCs listen on (default: 127.0.0.1; 0.0.0.0 for all)",
    )
    parser.add_argument("--opcua-port", type=int, default=4840, help="OPC UA port (default: 4840)")
    parser.add_argument(
        "--modbus-port", type=int, default=5020, help="Modbus TCP port (default: 5020)"
    )
    add_secure_options(parser)
    add_device_fault_option(parser)
    add_behaviour_options(parser)


def sim_secure_endpoint(args: argparse.Namespace) -> SecureEndpoint | None:
    """The secured OPC UA server `add_sim_endpoints`' options ask for (blocking: it may create
    the server certificate)."""
    try:
        return secure_endpoint(args)
    except SecureOptionsError as exc:
        raise CommandError(str(exc)) from None


def register(sub: Any) -> None:
    """Add the line's commands to the `shopfloor` command line."""
    _add_up(sub)
    _add_sim(sub)
    _add_query(sub)
    _add_sim_config(sub)


def _add_up(sub: Any) -> None:
    parser = command(
        sub,
        "up",
        up,
        "Run the simulated line, its connectors, the historian and anomaly detection in one "
        "process, with a live status.",
    )
    add_line(parser)
    add_sim_endpoints(parser)
    add_historian(parser)
    add_publish(parser)
    add_spool(parser)
    add_detection_options(parser)
    add_duration(parser)


def _add_sim(sub: Any) -> None:
    parser = command(
        sub,
        "sim",
        sim,
        "Run only the simulated PLCs (OPC UA and Modbus TCP servers); injected faults go to the "
        "historian's `events` as ground truth.",
    )
    add_line(parser)
    add_sim_endpoints(parser)
    add_historian(parser)
    add_duration(parser)


def _add_query(sub: Any) -> None:
    parser = command(
        sub,
        "query",
        query,
        "Show what the historian holds: the latest value of every signal, filtered.",
    )
    parser.add_argument("--machine", help="only this machine")
    parser.add_argument("--signal", help="only this signal")
    parser.add_argument(
        "--since",
        type=parse_duration,
        metavar="TIME",
        help="only values newer than this (e.g. 5m, 1h)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_historian(parser)


def _add_sim_config(sub: Any) -> None:
    parser = command(
        sub,
        "sim-config",
        sim_config,
        "Print the connectors file that reads every tag of a simulated line.",
    )
    parser.add_argument(
        "--line", metavar="FILE", help="the line data file (default: the food-and-beverage line)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="where the simulator runs")
    parser.add_argument("--opcua-port", type=int, default=4840, help="its OPC UA port")
    parser.add_argument("--modbus-port", type=int, default=5020, help="its Modbus TCP port")
