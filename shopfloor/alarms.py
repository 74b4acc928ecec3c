"""`shopfloor ack`: acknowledge a PLC alarm, where the connectors file allows it."""

from __future__ import annotations

import argparse
import getpass
import logging
from datetime import UTC, datetime
from typing import Any

from connectors.config import load_config
from connectors.opcua.ack import AckError, acknowledge
from connectors.opcua.config import Config
from shopfloor.options import CommandError, command

USER_ERRORS = (AckError,)
log = logging.getLogger("shopfloor.ack")


async def ack(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    entry = next((e for e in config.entries if e.name == args.connector), None)
    if not isinstance(entry, Config):
        raise CommandError(f"no OPC UA connector named {args.connector!r} in {args.config}")
    try:
        await acknowledge(entry, args.condition, args.event, args.comment)
    except ValueError as exc:  # a malformed condition id
        raise CommandError(f"--condition: {exc}") from None
    who, when = getpass.getuser(), datetime.now(UTC).isoformat(timespec="seconds")
    line = f"acknowledged {args.condition} on {entry.name} by {who} at {when}: {args.comment}"
    log.warning("%s", line)  # on record in the log, whatever the log level asks for
    print(line)
    return 0


def register(sub: Any) -> None:
    parser = command(
        sub,
        "ack",
        ack,
        "Acknowledge an active PLC alarm (an OPC UA condition) with a comment. Only for a "
        "connector whose entry has `alarms: {acknowledge: true}`; refused otherwise. The "
        "condition and event ids are the `condition_id` and `event_id` of the alarm's newest "
        "event in the historian.",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the connectors file")
    parser.add_argument("--connector", required=True, metavar="NAME", help="the PLC's connector")
    parser.add_argument("--condition", required=True, metavar="NODEID", help="condition_id")
    parser.add_argument("--event", required=True, metavar="HEX", help="event_id")
    parser.add_argument("--comment", required=True, help="why, e.g. 'belt cleared'")
