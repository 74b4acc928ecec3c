"""The `downtime` command: the machines' stops ranked by reason (a Pareto), or listed one by one
with the ids an operator labels them by (analytics.downtime; docs/oee.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analytics.downtime import Reasons, ReasonsError, Stop, load_reasons, pareto, stops
from core.schema import EVENTS
from shopfloor.connect import opened
from shopfloor.options import CommandError, add_historian, add_since, command
from shopfloor.query import Row, iso, since_ns, table

DEFAULT_HISTORY_S = 86_400.0  # a day: the shifts an engineer reviews in the morning


async def downtime(args: argparse.Namespace) -> int:
    """Print the Pareto of reasons (or the stops); exit 1 when there are none."""
    async with opened(args) as historian:
        events = await historian.points(
            EVENTS.name, start_ns=since_ns(args.since or DEFAULT_HISTORY_S)
        )
    found = [s for s in stops(events) if not args.machine or s.machine == args.machine]
    rows = [_stop(s) for s in found] if args.stops else _pareto(found)
    if not rows:
        print(f"no stops in {args.historian_name} for these filters", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


def reasons_option(path: Path | None) -> dict[str, Reasons] | None:
    """The plant's reason codes of `--reasons FILE` (detect, up), if given."""
    if path is None:
        return None
    try:
        return dict(load_reasons(path))
    except ReasonsError as exc:
        raise CommandError(str(exc)) from None


def _pareto(found: list[Stop]) -> list[Row]:
    return [
        {
            "reason": r.reason,
            "category": r.category.value,
            "stops": r.stops,
            "micro_stops": r.micro_stops,
            "lost_s": round(r.lost_s, 1),
            "share_pct": round(100 * r.share, 1),
        }
        for r in pareto(found)
    ]


def _stop(stop: Stop) -> Row:
    return {
        "id": stop.id,
        "reason": stop.reason.name,
        "category": stop.reason.category.value,
        "until": "open" if stop.end is None else iso(round(stop.end * 1e9)),
        "duration_s": None if stop.end is None else round(stop.duration_s, 1),
        "micro_stop": stop.micro() if stop.end is not None else None,
    }


def register(sub: Any) -> None:
    parser = command(
        sub,
        "downtime",
        downtime,
        "Rank the reasons the machines stood by lost time (a Pareto): category (planned or "
        "unplanned), stops, micro-stops, lost seconds and share; --stops lists each stop with "
        "the id `label` takes.",
    )
    parser.add_argument("--machine", help="only this machine's stops")
    parser.add_argument("--stops", action="store_true", help="list the stops, not the Pareto")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_since(parser)
    add_historian(parser)
