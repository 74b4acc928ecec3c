"""The live view's options and wiring: `up` serves it unless told not to, `connect` and `ingest`
when asked with --view."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from core.storage import Historian
from liveview.server import LiveView
from shopfloor.options import CommandError


def add_view_options(parser: argparse.ArgumentParser, *, default_on: bool) -> None:
    if default_on:
        parser.add_argument(
            "--no-view", dest="view", action="store_false", help="do not serve the live view"
        )
    else:
        parser.add_argument(
            "--view", action="store_true", help="serve the live view (a web page of the data)"
        )
    parser.add_argument(
        "--view-port",
        type=int,
        default=0,
        metavar="PORT",
        help="the live view's port (default: a free one; the URL is printed)",
    )
    parser.add_argument(
        "--view-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the live view listens on (default: 127.0.0.1, this machine only; "
        "0.0.0.0 lets the network in, with no login)",
    )


@asynccontextmanager
async def served(
    args: argparse.Namespace, historian: Historian, machines: Sequence[str] = (), title: str = ""
) -> AsyncIterator[str | None]:
    """The live view while the block runs, if the options ask for it; yields its URL."""
    if not args.view:
        yield None
        return
    view = LiveView(
        historian,
        host=args.view_host,
        port=args.view_port,
        machines=machines,
        title=title or "Shopfloor",
    )
    try:
        await view.start()
    except OSError as exc:
        raise CommandError(
            f"cannot serve the live view on {args.view_host}:{args.view_port} "
            f"({exc.strerror or exc}); pick another with --view-port"
        ) from None
    try:
        yield view.url
    finally:
        await view.stop()
