"""The `ingest` command: the unified namespace on an MQTT broker into the historian, wired from
uns.broker and uns.ingest (`--publish` is in shopfloor.connect)."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from delivery.agent import Agent
from shopfloor.connect import add_spool, announce, opened, run_spooled, spooled_writer
from shopfloor.options import CommandError, add_duration, add_historian, command
from shopfloor.status import LiveStatus, summary_at_the_end
from shopfloor.view import add_view_options, served
from uns.broker import open_broker
from uns.ingest import MqttIngest

BIRTHS_FILE = "sparkplug-births.json"  # what an ingest worker learned, kept with its spool


async def ingest(args: argparse.Namespace) -> int:
    """Read the namespace from the broker into the historian, as one worker of a shared
    subscription."""
    broker = open_broker(args.source)
    client_id = args.client_id or f"shopfloor-ingest-{socket.gethostname()}"
    slots = frozenset(filter(None, (args.slots or "").split(",")))
    if slots and client_id not in slots:
        raise CommandError(
            f"--client-id {client_id} is not one of --slots {','.join(sorted(slots))}: a worker "
            "outside the slots would take a share of the data into a session that no "
            "supervisor brings back"
        )
    async with opened(args) as historian:
        writer = await spooled_writer(args, historian)
        source = MqttIngest(
            broker,
            writer.put_points,
            client_id=client_id,
            births_file=writer.spool.folder / BIRTHS_FILE if writer.spool.folder else None,
            slots=slots,
        )
        status = LiveStatus([source], writer, historian_name=args.historian_name)
        agent = Agent([source], writer, observers=[status.observe])
        async with served(args, historian, title="unified namespace ingest") as url:
            announce(status, url)
            async with summary_at_the_end(status):
                await run_spooled(args, agent, agent.run(), status.run())
    return 0


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
    parser.add_argument(
        "--slots",
        metavar="ID,ID",
        default=os.environ.get("SHOPFLOOR_INGEST_SLOTS"),
        help="the client ids of every worker of the share group (env SHOPFLOOR_INGEST_SLOTS): "
        "a --client-id outside them is refused, and another worker outside them is reported "
        "(log, /health)",
    )
    add_historian(parser)
    add_spool(parser)
    add_view_options(parser, default_on=False)
    add_duration(parser)
