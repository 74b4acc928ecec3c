"""The line's commands: up, sim, connect, query, sim-config; wired from the parts."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from connectors.agent import Agent
from connectors.config import ConnectorsConfig, load_config, parse_config
from historian import open_historian
from historian.base import Historian, Reading
from historian.sample import Point
from historian.spool import DEFAULT_MAX_BYTES, Spool, SpoolError, parse_size
from historian.sqlite import SQLiteHistorian
from historian.units import unit_of
from historian.writer import HistorianWriter
from plc_sim.faults import FaultEvent
from plc_sim.options import behaviour, device_faults
from plc_sim.options import describe as describe_secure_endpoint
from plc_sim.process import WARMUP_S
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpec, load_line
from shopfloor import uns
from shopfloor.durations import parse_duration
from shopfloor.health import HealthServer
from shopfloor.options import (
    CommandError,
    add_detection_options,
    add_duration,
    add_historian,
    add_line,
    add_sim_endpoints,
    command,
    run_for,
    sim_secure_endpoint,
)
from shopfloor.simconfig import render_sim_connectors, sim_connectors
from shopfloor.status import LiveStatus


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
    async with _opened(args) as historian:
        detection = LineDetection(args, spec, historian)
        await detection.prepare()
        writer = await uns.writer_for(args, historian, keep_historian=True)
        agent, status = _agent(config, writer, args.historian_name, detection.anomalies)

        async def connectors_once_listening() -> None:
            await ready.wait()
            await agent.run()

        await _run_spooled(
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
    async with _opened(args) as historian:
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
    writer: HistorianWriter,
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
            **behaviour(args),  # type: ignore[arg-type]
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


async def connect(args: argparse.Namespace) -> int:
    """The connectors of a config file, streaming into the historian."""
    config = load_config(args.config)
    async with _opened(args) as historian:
        writer = await uns.writer_for(args, historian, keep_historian=args.historian is not None)
        agent, status = _agent(config, writer, args.historian_name)
        await _run_spooled(args, agent, agent.run(), status.run())
        print(status.summary())
    return 0


async def _spooled_writer(args: argparse.Namespace, historian: Historian) -> HistorianWriter:
    """The writer with the spool the options ask for, opened now: an unusable folder stops the
    command before anything runs (or is logged and run around, if memory-only is allowed)."""
    folder = args.spool or _default_spool(historian)
    spool = Spool(folder, max_bytes=args.spool_max, memory_fallback=args.memory_only_on_spool_error)
    writer = HistorianWriter(historian, spool=spool)
    try:
        await writer.open()
    except SpoolError as exc:
        hint = "; or allow --memory-only-on-spool-error" if exc.memory_helps else ""
        raise CommandError(f"{exc}{hint}") from None
    return writer


def _default_spool(historian: Historian) -> Path:
    """`spool/` next to the SQLite file, else in the working directory."""
    if isinstance(historian, SQLiteHistorian):
        return Path(historian.path).parent / "spool"
    return Path("spool")


async def _run_spooled(args: argparse.Namespace, agent: Agent, *work: Awaitable[object]) -> None:
    """`run_for` with the /health server if asked for; a spool that fails mid-run is a
    clear one-line error."""
    if args.health_port is not None:
        health = HealthServer(agent.inputs, agent.writer, port=args.health_port)
        work = (*work, health.run())
    try:
        await run_for(args.duration, *work)
    except SpoolError as exc:
        raise CommandError(str(exc)) from None


async def query(args: argparse.Namespace) -> int:
    """Latest value per machine and signal, as a table or JSON."""
    since_ns = time.time_ns() - int(args.since * 1e9) if args.since else None
    async with _opened(args) as historian:
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


def _opened(args: argparse.Namespace) -> Historian:
    """The historian the command line names; used as `async with`, so it is always closed."""
    historian = open_historian(args.historian)
    args.historian_name = historian.describe()
    return historian


def _agent(
    config: ConnectorsConfig,
    writer: HistorianWriter,
    historian_name: str,
    anomalies: Callable[[], Mapping[str, str]] = dict,
) -> tuple[Agent, LiveStatus]:
    inputs = config.build_inputs()
    status = LiveStatus(inputs, writer, historian_name=historian_name, anomalies=anomalies)
    return Agent(inputs, writer, observers=[status.observe]), status


def _event_writer(
    spec: LineSpec, writer: HistorianWriter
) -> Callable[[FaultEvent, int], Awaitable[None]]:
    """Injected faults become `events` points: the ground truth that detection is scored on."""

    async def write(event: FaultEvent, ts_ns: int) -> None:
        await writer.put_points(
            [
                Point(
                    "events",
                    {
                        "site": spec.site,
                        "line": spec.line,
                        "machine": event.machine,
                        "kind": "fault",
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
        "unit": unit_of(reading.signal),
        "quality": reading.quality.name.lower(),
        "time": _iso(reading.ts),
    }


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _table(readings: list[Reading]) -> str:
    rows = [("MACHINE", "SIGNAL", "VALUE", "UNIT", "QUALITY", "TIME (UTC)")]
    for r in readings:
        value = repr(r.value) if math.isfinite(r.value) else "-"  # exactly as stored
        rows.append(
            (r.machine, r.signal, value, unit_of(r.signal), r.quality.name.lower(), _iso(r.ts))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def register(sub: Any) -> None:
    """Add the line's commands to the `shopfloor` command line."""
    _add_up(sub)
    _add_sim(sub)
    _add_connect(sub)
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
    uns.add_publish(parser)
    _add_spool(parser)
    add_detection_options(parser)
    add_duration(parser)


def _add_spool(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool",
        metavar="DIR",
        type=Path,
        help="the durable spool folder: every batch is on disk here until the historian has "
        "it (default: spool/ next to the SQLite file, else in the working directory)",
    )
    parser.add_argument(
        "--spool-max",
        metavar="SIZE",
        type=parse_size,
        default=DEFAULT_MAX_BYTES,
        help="when the spool holds this much, the oldest data is dropped and counted "
        "(default: 1GB; e.g. 500MB, 10GiB)",
    )
    parser.add_argument(
        "--memory-only-on-spool-error",
        action="store_true",
        help="if the spool folder cannot be used at start, run with data in memory only "
        "(lost if the process stops); default: stop with an error. A folder that fails "
        "while running (disk full, read-only) always falls back to memory and is retried",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="serve GET /health (JSON: connectors, samples/s, spool, drops, last error) on "
        "127.0.0.1:PORT",
    )


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


def _add_connect(sub: Any) -> None:
    parser = command(
        sub,
        "connect",
        connect,
        "Run the connectors of a config file against real or simulated PLCs.",
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the connectors file (YAML)"
    )
    add_historian(parser)
    uns.add_publish(parser)
    _add_spool(parser)
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
