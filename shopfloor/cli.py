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
from collections.abc import Coroutine, Sequence
from typing import Any

from analytics.model_store import ModelError
from connectors.config import ConfigError
from historian.base import HistorianError
from plc_sim.spec import LineSpecError
from shopfloor import commissioning, detection, detection_eval, line, uns
from shopfloor.options import CommandError

USER_ERRORS = (ConfigError, HistorianError, LineSpecError, ModelError, CommandError)
# Each group of commands registers itself; a new group is one more module here.
COMMAND_GROUPS = (line, commissioning, detection, detection_eval, uns)


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
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
