"""The `connect` command, and the wiring every long-running command shares: the historian the
command line names, the spooled writer (to it, to an MQTT broker with `--publish`, or both),
the agent with its live status, and the /health server.

It imports neither the simulator nor an MQTT client unless asked for: `connect` is what runs
next to real PLCs, and its memory is the connectors' (the broker's modules load with
`--publish`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from connectors.config import ConnectorsConfig, load_config
from core.storage import Historian, Sink
from delivery.agent import Agent
from delivery.fanout import Fanout
from delivery.ledger import remember_losses
from delivery.spool import DEFAULT_MAX_BYTES, Spool, SpoolError, parse_size
from delivery.writer import HistorianWriter, Writer
from historian import open_historian
from shopfloor.health import HealthServer
from shopfloor.options import CommandError, add_duration, add_historian, command, run_for
from shopfloor.status import LiveStatus, summary_at_the_end
from shopfloor.view import add_view_options, served
from uns.broker import open_broker

PUBLISH_HELP = (
    "also (or, for connect without --historian, only) publish to an MQTT broker "
    "(default $SHOPFLOOR_PUBLISH): "
    "mqtt[s]://HOST:PORT[?group=G&node=N&area=A&format=sparkplug,json]; credentials and TLS "
    "files from MQTT_USERNAME, MQTT_PASSWORD(_FILE), MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE"
)


async def connect(args: argparse.Namespace) -> int:
    """The connectors of a config file, streaming into the historian."""
    config = load_config(args.config)
    async with opened(args) as historian:
        keep_historian = args.historian is not None
        writer = await writer_for(args, historian, keep_historian=keep_historian)
        if keep_historian:
            await recall_losses(config, writer, historian)
        agent, status = build_agent(config, writer, args.historian_name)
        async with served(args, historian, title=f"{config.site} · {config.line}") as url:
            announce(status, url)
            async with summary_at_the_end(status):
                await run_spooled(args, agent, agent.run(), status.run())
    return 0


def announce(status: LiveStatus, url: str | None) -> None:
    """Say where the live view is (if served) and how to stop, once and under the live table."""
    status.hints = [*([f"live view: {url}"] if url else []), "Ctrl-C stops"]
    print("\n".join(status.hints), flush=True)


def opened(args: argparse.Namespace) -> Historian:
    """The historian the command line names; used as `async with`, so it is always closed."""
    historian = open_historian(args.historian)
    args.historian_name = historian.describe()
    return historian


async def writer_for(
    args: argparse.Namespace, historian: Historian, *, keep_historian: bool
) -> Writer:
    """The spooled writer the options ask for: the historian's, the broker's, or both (each
    with its own spool folder, so that one outage holds back only its own data)."""
    url = args.publish or os.environ.get("SHOPFLOOR_PUBLISH")
    if not url:
        return await spooled_writer(args, historian)
    from uns.publisher import MqttPublisher  # the MQTT client: only when publishing

    publisher = MqttPublisher(open_broker(url))
    folder = args.spool or default_spool(historian)
    if not keep_historian:
        args.historian_name = publisher.describe()
        return await spooled_writer(_with_spool(args, folder), publisher)
    to_historian = await spooled_writer(_with_spool(args, folder), historian)
    broker_spool = folder.with_name(f"{folder.name}-mqtt")
    to_broker = await spooled_writer(_with_spool(args, broker_spool), publisher)
    args.historian_name = f"{args.historian_name} and {publisher.describe()}"
    return Fanout([to_historian, to_broker])


def _with_spool(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "spool": folder})


async def spooled_writer(args: argparse.Namespace, historian: Sink) -> HistorianWriter:
    """The writer with the spool the options ask for, opened now: an unusable folder stops the
    command before anything runs (or is logged and run around, if memory-only is allowed)."""
    folder = args.spool or default_spool(historian)
    spool = Spool(folder, max_bytes=args.spool_max, memory_fallback=args.memory_only_on_spool_error)
    writer = HistorianWriter(historian, spool=spool)
    try:
        await writer.open()
    except SpoolError as exc:
        hint = "; or allow --memory-only-on-spool-error" if exc.memory_helps else ""
        raise CommandError(f"{exc}{hint}") from None
    return writer


def default_spool(historian: Sink) -> Path:
    """`spool/` next to the SQLite file, else in the working directory."""
    path = getattr(historian, "path", None)  # only a file historian (SQLite) has one
    return Path(path).parent / "spool" if path else Path("spool")


async def recall_losses(config: ConnectorsConfig, writer: Writer, historian: Historian) -> None:
    """The spool's loss counters as the historian's `connector` points last had them, where
    the spool folder kept less (it could not save them): see delivery.ledger."""
    names = [entry.name for entry in config.entries]
    await remember_losses(writer.stats.spool, historian, names)


def build_agent(
    config: ConnectorsConfig,
    writer: Writer,
    historian_name: str,
    anomalies: Callable[[], Mapping[str, str]] = dict,
) -> tuple[Agent, LiveStatus]:
    """The config's inputs feeding `writer`, watched by a live status."""
    inputs = config.build_inputs()
    status = LiveStatus(inputs, writer, historian_name=historian_name, anomalies=anomalies)
    return Agent(inputs, writer, observers=[status.observe]), status


async def run_spooled(
    args: argparse.Namespace, agent: Agent, *work: Coroutine[Any, Any, object]
) -> None:
    """`run_for` with the /health server if asked for; a spool that fails mid-run is a
    clear one-line error."""
    if args.health_port is not None:
        health = HealthServer(agent.inputs, agent.writer, port=args.health_port)
        work = (*work, health.run())
    try:
        await run_for(args.duration, *work)
    except SpoolError as exc:
        raise CommandError(str(exc)) from None


def register(sub: Any) -> None:
    """Add `connect` to the `shopfloor` command line."""
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
    add_publish(parser)
    add_spool(parser)
    add_view_options(parser, default_on=False)
    add_duration(parser)


def add_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish", metavar="URL", help=PUBLISH_HELP)


def add_spool(parser: argparse.ArgumentParser) -> None:
    """The spool and /health options of a command that runs connectors."""
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
