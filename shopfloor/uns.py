"""The unified namespace on an MQTT broker: `--publish` for `connect` and `up`, the `ingest`
command, and the stream `detect --from` scores; wired from historian.mqtt and connectors.mqtt."""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from connectors.agent import Agent
from connectors.mqtt import MqttIngest
from historian.base import Historian
from historian.fanout import Fanout
from historian.mqtt import clean_id, open_broker
from historian.mqtt.publisher import MqttPublisher
from historian.recent import RecentHistorian
from historian.sample import Point
from historian.writer import HistorianWriter
from shopfloor import line
from shopfloor.options import add_duration, add_historian, command
from shopfloor.status import LiveStatus

BIRTHS_FILE = "sparkplug-births.json"  # what an ingest worker learned, kept with its spool
PUBLISH_HELP = (
    "also (or, for connect without --historian, only) publish to an MQTT broker "
    "(default $SHOPFLOOR_PUBLISH): "
    "mqtt[s]://HOST:PORT[?group=G&node=N&area=A&format=sparkplug,json]; credentials and TLS "
    "files from MQTT_USERNAME, MQTT_PASSWORD(_FILE), MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE"
)


def add_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish", metavar="URL", help=PUBLISH_HELP)


async def writer_for(
    args: argparse.Namespace, historian: Historian, *, keep_historian: bool
) -> HistorianWriter | Fanout:
    """The spooled writer the options ask for: the historian's, the broker's, or both (each
    with its own spool folder, so that one outage holds back only its own data)."""
    url = args.publish or os.environ.get("SHOPFLOOR_PUBLISH")
    if not url:
        return await line._spooled_writer(args, historian)
    publisher = MqttPublisher(open_broker(url))
    folder = args.spool or line._default_spool(historian)
    if not keep_historian:
        args.historian_name = publisher.describe()
        return await line._spooled_writer(_with_spool(args, folder), publisher)
    to_historian = await line._spooled_writer(_with_spool(args, folder), historian)
    broker_spool = folder.with_name(f"{folder.name}-mqtt")
    to_broker = await line._spooled_writer(_with_spool(args, broker_spool), publisher)
    args.historian_name = f"{args.historian_name} and {publisher.describe()}"
    return Fanout([to_historian, to_broker])


def _with_spool(args: argparse.Namespace, folder: Path) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "spool": folder})


async def ingest(args: argparse.Namespace) -> int:
    """Read the namespace from the broker into the historian, as one worker of a shared
    subscription."""
    broker = open_broker(args.source)
    async with line._opened(args) as historian:
        writer = await line._spooled_writer(args, historian)
        source = MqttIngest(
            broker,
            writer.put_points,
            client_id=args.client_id or f"shopfloor-ingest-{socket.gethostname()}",
            births_file=writer.spool.folder / BIRTHS_FILE if writer.spool.folder else None,
        )
        status = LiveStatus([source], writer, historian_name=args.historian_name)
        agent = Agent([source], writer, observers=[status.observe])
        await line._run_spooled(args, agent, agent.run(), status.run())
        print(status.summary())
    return 0


DETECT_SESSION_S = 300  # a detector gone for longer leaves no queue growing on the broker


def stream(
    url: str, store: Historian, *, hold_s: float, client_id: str | None = None
) -> tuple[RecentHistorian, Coroutine[Any, Any, None]]:
    """What `detect --from mqtt://` scores: the namespace's samples, decoded as `ingest` decodes
    them, held in memory (the historian the detector reads) while `store` takes the anomaly
    points; and the coroutine that feeds it. The share group is the detector's own (its client
    id): in the historians' group it would take their messages away from them."""
    client_id = clean_id(client_id or f"shopfloor-detect-{socket.gethostname()}")
    broker = dataclasses.replace(open_broker(url), share=client_id)
    recent = RecentHistorian(store, hold_s=hold_s)
    source = MqttIngest(broker, _not_scored, client_id=client_id, session_expiry_s=DETECT_SESSION_S)
    return recent, source.run(recent.write_samples)


async def _not_scored(points: Sequence[Point]) -> None:
    """Events and health points are the historians' (ingest stores them), not the detector's."""


def register(sub: Any) -> None:
    parser = command(
        sub,
        "ingest",
        ingest,
        "Subscribe to the unified namespace on an MQTT broker (Sparkplug B) and write it to the "
        "historian; run several to share the load.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the broker: mqtt[s]://HOST:PORT[?group=G&share=S] (credentials as for --publish)",
    )
    parser.add_argument(
        "--client-id",
        metavar="ID",
        help="this worker's MQTT client id: its persistent session, so keep it across restarts "
        "(default: shopfloor-ingest-HOSTNAME)",
    )
    add_historian(parser)
    line._add_spool(parser)
    add_duration(parser)
