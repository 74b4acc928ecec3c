"""`shopfloor`: run the simulated line, connect to PLCs, read back the historian.

Every command picks its historian the same way: `--historian URL`, else $SHOPFLOOR_HISTORIAN,
else the embedded SQLite file `shopfloor.db`. A user mistake ends in one clear line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from analytics.errors import ModelError
from connectors.config import ConfigError
from core.storage import HistorianError
from shopfloor.options import SUMMARIES, CommandError

# Errors a user can cause, which end a command with their message and exit code 2: these for
# every command, and those a group module names in its own USER_ERRORS (so that `connect` need
# not load the simulator for the line file's error).
USER_ERRORS = (ConfigError, HistorianError, ModelError, CommandError)
# Each group of commands registers itself (its module's `register`); a new group is one more
# entry here. Only the group of the command given is imported, so that `connect` starts in a
# fraction of a second without loading scikit-learn or an OPC UA stack it does not use; the list
# of commands (`shopfloor --help`, an unknown command) imports none: it takes each command's
# summary from options.SUMMARIES.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "shopfloor.line": ("up", "sim", "sim-config"),
    "shopfloor.query": ("query",),
    "shopfloor.connect": ("connect",),
    "shopfloor.commissioning": ("certs", "browse", "probe", "check"),
    "shopfloor.detection": ("train", "detect", "report"),
    "shopfloor.detection_eval": ("eval",),
    "shopfloor.episodes": ("episodes", "label", "plan"),
    "shopfloor.models": ("models", "rollback"),
    "shopfloor.downtime": ("downtime",),
    "shopfloor.ingest": ("ingest",),
    "shopfloor.alarms": ("ack",),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shopfloor` command; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    groups = _groups_for(argv)
    args = build_parser(groups).parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_run_until_signal(args.handler(args)))
    except _user_errors(groups) as exc:
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


def _user_errors(groups: Sequence[str]) -> tuple[type[Exception], ...]:
    named = (getattr(importlib.import_module(g), "USER_ERRORS", ()) for g in groups)
    return (*USER_ERRORS, *(error for errors in named for error in errors))


def _groups_for(argv: Sequence[str]) -> Sequence[str]:
    """The group of the command in `argv`; none when there is no command (or an unknown one):
    the list of commands in the help or the error needs no group."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return [g for g, commands in COMMAND_GROUPS.items() if word in commands]
    return []


def build_parser(groups: Sequence[str] = (*COMMAND_GROUPS,)) -> argparse.ArgumentParser:
    """The command line of `groups` (by default the whole one), with --help on every command;
    the commands of the other groups are listed with their summary, not loaded."""
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
    for group, commands in COMMAND_GROUPS.items():
        if group in groups:
            importlib.import_module(group).register(sub)
        else:
            for name in commands:
                sub.add_parser(name, help=SUMMARIES[name])
    return parser


if __name__ == "__main__":
    sys.exit(main())
