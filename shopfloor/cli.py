"""`shopfloor`: run the simulated line, connect to PLCs, read back the historian.

Every command picks its historian the same way: `--historian URL`, else $SHOPFLOOR_HISTORIAN,
else the embedded SQLite file `shopfloor.db`. A user mistake ends in one clear line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from connectors.config import ConfigError
from historian.base import HistorianError
from plc_sim.spec import LineSpecError
from shopfloor import commands
from shopfloor.durations import parse_duration

USER_ERRORS = (ConfigError, HistorianError, LineSpecError, commands.CommandError)

HISTORIAN_HELP = (
    "where data goes: sqlite:PATH, influxdb[s]://HOST:PORT/DATABASE (v1 API; credentials from "
    "INFLUX_USERNAME/INFLUX_PASSWORD) or influxdb2[s]://HOST:PORT (INFLUX_ORG, INFLUX_BUCKET, "
    "INFLUX_TOKEN); default $SHOPFLOOR_HISTORIAN or sqlite:shopfloor.db"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shopfloor` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_run_until_signal(args.handler(args)))
    except USER_ERRORS as exc:
        for problem in str(exc).splitlines():
            print(f"shopfloor {args.command}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run_until_signal(work: Coroutine[Any, Any, int]) -> int:
    """Run `work`, turning SIGTERM (docker stop, systemd) into the same clean stop as Ctrl-C."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    except asyncio.CancelledError:
        return 0
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with --help on every command."""
    parser = argparse.ArgumentParser(
        prog="shopfloor",
        description="A smart-factory line you can run: simulated PLCs (OPC UA, Modbus TCP), "
        "connectors, a historian and analytics.",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: warning)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_up(sub)
    _add_sim(sub)
    _add_connect(sub)
    _add_query(sub)
    _add_sim_config(sub)
    return parser


def _command(
    sub: Any, name: str, handler: Callable[..., Any], help_text: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def _add_historian(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--historian", metavar="URL", help=HISTORIAN_HELP)


def _add_duration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=parse_duration,
        metavar="TIME",
        help="stop after this long (e.g. 90s, 10m, 2h); default: run until Ctrl-C",
    )


def _add_line(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--line", metavar="FILE", help="the line data file (default: the food-and-beverage line)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")


def _add_sim_endpoints(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the simulated PLCs listen on (default: 127.0.0.1; 0.0.0.0 for all)",
    )
    parser.add_argument("--opcua-port", type=int, default=4840, help="OPC UA port (default: 4840)")
    parser.add_argument(
        "--modbus-port", type=int, default=5020, help="Modbus TCP port (default: 5020)"
    )


def _add_up(sub: Any) -> None:
    parser = _command(
        sub,
        "up",
        commands.up,
        "Run the simulated line, its connectors and the historian in one process, "
        "with a live status.",
    )
    _add_line(parser)
    _add_sim_endpoints(parser)
    _add_historian(parser)
    _add_duration(parser)


def _add_sim(sub: Any) -> None:
    parser = _command(
        sub,
        "sim",
        commands.sim,
        "Run only the simulated PLCs (OPC UA and Modbus TCP servers); injected faults go to the "
        "historian's `events` as ground truth.",
    )
    _add_line(parser)
    _add_sim_endpoints(parser)
    _add_historian(parser)
    _add_duration(parser)


def _add_connect(sub: Any) -> None:
    parser = _command(
        sub,
        "connect",
        commands.connect,
        "Run the connectors of a config file against real or simulated PLCs.",
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="the connectors file (YAML)"
    )
    _add_historian(parser)
    _add_duration(parser)


def _add_query(sub: Any) -> None:
    parser = _command(
        sub,
        "query",
        commands.query,
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
    _add_historian(parser)


def _add_sim_config(sub: Any) -> None:
    parser = _command(
        sub,
        "sim-config",
        commands.sim_config,
        "Print the connectors file that reads every tag of a simulated line.",
    )
    parser.add_argument(
        "--line", metavar="FILE", help="the line data file (default: the food-and-beverage line)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="where the simulator runs")
    parser.add_argument("--opcua-port", type=int, default=4840, help="its OPC UA port")
    parser.add_argument("--modbus-port", type=int, default=5020, help="its Modbus TCP port")


if __name__ == "__main__":
    sys.exit(main())
