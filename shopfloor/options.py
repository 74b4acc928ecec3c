"""What the `shopfloor` commands share: common options, the error for user mistakes, and how
long-running parts run together."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from shopfloor.durations import parse_duration


def add_kpi_interval(parser: argparse.ArgumentParser, *, default: str) -> None:
    """--kpi-interval and --reasons (what OEE and stops are computed with), for `detect` and
    `up`; argparse runs the default through the type."""
    parser.add_argument(
        "--kpi-interval",
        type=parse_duration,
        default=default,
        metavar="TIME",
        help=f"write OEE per machine at this interval (default: {default})",
    )
    parser.add_argument(
        "--reasons",
        type=Path,
        metavar="FILE",
        help="your PLCs' stop reason codes per machine, over the standard ones (docs/oee.md)",
    )


def add_detection_options(parser: argparse.ArgumentParser) -> None:
    """`up`'s options for its anomaly detection."""
    parser.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="the anomaly models, versions per machine; trained on a simulated fault-free run "
        "when the folder has none (default: models/ next to the SQLite file, else ./models)",
    )
    add_kpi_interval(parser, default="1m")
    parser.add_argument(
        "--no-detect", action="store_true", help="run the line without anomaly detection"
    )


class CommandError(Exception):
    """A command cannot do what was asked; the message says why and what to do."""


HISTORIAN_HELP = (
    "where data goes: sqlite:PATH, influxdb[s]://HOST:PORT/DATABASE (v1 API; credentials from "
    "INFLUX_USERNAME/INFLUX_PASSWORD) or influxdb2[s]://HOST:PORT (INFLUX_ORG, INFLUX_BUCKET, "
    "INFLUX_TOKEN); default $SHOPFLOOR_HISTORIAN or sqlite:shopfloor.db"
)


# Every command's one line in `shopfloor --help`: the list needs no command group loaded.
SUMMARIES: dict[str, str] = {
    "up": "Run the simulated line, its connectors, the historian and anomaly detection in one "
    "process, with a live status.",
    "sim": "Run only the simulated PLCs (OPC UA and Modbus TCP servers).",
    "query": "Show what the historian holds: the latest value of every signal, filtered.",
    "sim-config": "Print the connectors file that reads every tag of a simulated line.",
    "connect": "Run the connectors of a config file against real or simulated PLCs.",
    "certs": "Create the connectors' OPC UA application instance certificate and key.",
    "browse": "Show an OPC UA server's objects and variables as a tree; --emit-config writes a "
    "connectors file for them.",
    "probe": "Read Modbus registers once and show them decoded every way, side by side.",
    "ack": "Acknowledge a PLC alarm with a comment, where the connectors file allows it.",
    "check": "Read every tag of a connectors file once and say what is wrong with each.",
    "train": "Fit an anomaly model per machine on a normal period and save it.",
    "detect": "Score every machine that has a model, online: anomalies, episodes and OEE.",
    "report": "Draw a machine's signals, anomaly severity, episodes and true faults into a PNG.",
    "eval": "Score anomaly detection on a labelled simulated campaign or on your own labelled "
    "CSV runs (--dataset).",
    "episodes": "List the anomaly episodes and incidents with their ids and verdicts.",
    "label": "Give an episode, incident or stop an operator's verdict: fault, false alarm or "
    "planned.",
    "plan": "Announce a machine's planned period (cleaning, maintenance): no episodes open then.",
    "models": "List the versions of each machine's anomaly model, the active one marked.",
    "rollback": "Make an earlier version of a machine's anomaly model the active one.",
    "downtime": "Rank the reasons the machines stood by lost time (a Pareto), or list the stops.",
    "ingest": "Subscribe to the unified namespace on an MQTT broker (Sparkplug B) and write it "
    "to the historian.",
}


def command(
    sub: Any, name: str, handler: Callable[..., Any], description: str
) -> argparse.ArgumentParser:
    """A command's parser: its summary (SUMMARIES) in the list, `description` in its help."""
    parser = sub.add_parser(name, help=SUMMARIES[name], description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_historian(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--historian", metavar="URL", help=HISTORIAN_HELP)


def add_since(parser: argparse.ArgumentParser) -> None:
    """--since for the commands that look back over the historian (default: a day)."""
    parser.add_argument(
        "--since",
        type=parse_duration,
        metavar="TIME",
        help="how far back to look (e.g. 8h, 7d; default 24h)",
    )


def add_duration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=parse_duration,
        metavar="TIME",
        help="stop after this long (e.g. 90s, 10m, 2h); default: run until Ctrl-C",
    )


def add_line(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--line", metavar="FILE", help="the line data file (default: the food-and-beverage line)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")


async def run_for(duration_s: float | None, *work: Coroutine[Any, Any, object]) -> None:
    """Run the parts together until one fails, the duration ends, or we are cancelled."""
    try:
        async with asyncio.timeout(duration_s), asyncio.TaskGroup() as tasks:
            for part in work:
                tasks.create_task(part)
    except TimeoutError:
        pass
    except ExceptionGroup as group:
        # One part failing stops the rest; report that failure, not the groups around it
        # (a part with task groups of its own nests them).
        raise _first_failure(group) from None


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception inside (nested) exception groups."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found
