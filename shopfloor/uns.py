"""The unified namespace on an MQTT broker: the `ingest` command, and the stream `detect --from`
scores; wired from historian.mqtt and connectors.mqtt (`--publish` is in shopfloor.connect)."""

from __future__ import annotations

import argparse
import dataclasses
import socket
from collections.abc import Coroutine, Sequence
from typing import Any

from connectors.agent import Agent
from connectors.mqtt import MqttIngest
from historian.base import Historian
from historian.mqtt import clean_id, open_broker
from historian.recent import RecentHistorian
from historian.sample import Point
from shopfloor.connect import add_spool, opened, run_spooled, spooled_writer
from shopfloor.options import add_duration, add_historian, command
from shopfloor.status import LiveStatus

BIRTHS_FILE = "sparkplug-births.json"  # what an ingest worker learned, kept with its spool


async def ingest(args: argparse.Namespace) -> int:
    """Read the namespace from the broker into the historian, as one worker of a shared
    subscription."""
    broker = open_broker(args.source)
    async with opened(args) as historian:
        writer = await spooled_writer(args, historian)
        source = MqttIngest(
            broker,
            writer.put_points,
            client_id=args.client_id or f"shopfloor-ingest-{socket.gethostname()}",
            births_file=writer.spool.folder / BIRTHS_FILE if writer.spool.folder else None,
        )
        status = LiveStatus([source], writer, historian_name=args.historian_name)
        agent = Agent([source], writer, observers=[status.observe])
        await run_spooled(args, agent, agent.run(), status.run())
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
    add_spool(parser)
    add_duration(parser)
