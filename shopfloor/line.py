"""The line's commands: up, sim, sim-config; wired from the parts."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from connectors.config import parse_config
from core.sample import Point
from core.schema import EVENTS, EventKind
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
    recall_losses,
    run_spooled,
    writer_for,
)
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
from shopfloor.status import summary_at_the_end
from shopfloor.view import add_view_options, served

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
        await recall_losses(config, writer, historian)
        agent, status = build_agent(config, writer, args.historian_name, detection.anomalies)

        async def connectors_once_listening() -> None:
            await ready.wait()
            await agent.run()

        title = f"{spec.site} · {spec.line}"
        async with served(args, historian, list(spec.machines), title) as url:
            status.hints = where_to_look(args, spec, url)
            print("\n".join(status.hints), flush=True)
            async with summary_at_the_end(status, detection.summary):
                await run_spooled(
                    args,
                    agent,
                    _simulate(spec, args, writer, ready),
                    connectors_once_listening(),
                    detection.run(ready),
                    status.run(),
                )
    return 0


def where_to_look(args: argparse.Namespace, spec: LineSpec, url: str | None) -> list[str]:
    """What `up` tells a student once it runs: the page, the next commands, what is scheduled
    and how to stop."""
    historian = f" --historian {args.historian_name}" if args.historian else ""
    machine = spec.faults[0].machine if spec.faults else next(iter(spec.machines))
    hints = [f"live view: {url}"] if url else []
    hints += [
        f"in another terminal: bin/shopfloor query{historian} --since 5m",
        f"                     bin/shopfloor report{historian} --machine {machine} --since 30m"
        f" --out {machine}.png",
    ]
    hints += [
        f"scheduled fault: {f.fault} on {f.machine} at {_clock(f.at_s)}"
        f"{'' if f.duration_s is None else f' for {_clock(f.duration_s)}'}"
        f" (severity {f.severity:g})"
        for f in spec.faults
    ]
    hints.append("Ctrl-C stops and prints the summary")
    return hints


def _clock(seconds: float) -> str:
    """m:ss, or h:mm:ss past the hour: when a scheduled fault comes, from the start."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
    add_view_options(parser, default_on=True)
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
