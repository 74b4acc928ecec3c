"""The `episodes` and `label` commands: the anomaly episodes and incidents the detector found,
each with the id an operator labels it by, and an operator's verdict on one (fault, false alarm
or planned), stored in the historian as a label event with who and when (analytics.labels).
A machine's stop (analytics.downtime, listed by `downtime --stops`) is labelled the same way."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from analytics.downtime import stops
from analytics.labels import Labelled, Reviewed, label_point, reviewed
from core.schema import EVENTS, Verdict
from core.storage import Historian
from shopfloor.connect import opened
from shopfloor.durations import parse_duration
from shopfloor.options import CommandError, add_historian, command
from shopfloor.query import Row, iso, severity, since_ns, table

DEFAULT_HISTORY_S = 86_400.0  # a day: the shift's and the night's episodes


async def list_episodes(args: argparse.Namespace) -> int:
    """Print the episodes and incidents, newest last; exit 1 when there are none."""
    async with opened(args) as historian:
        found = await _reviewed(historian, args)
    rows = [_row(r) for r in found if not args.machine or args.machine in r.machines.split(",")]
    if not rows:
        print(f"no episodes in {args.historian_name} for these filters", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


async def label(args: argparse.Namespace) -> int:
    """Store the verdict on the episode, incident or stop `args.id`."""
    async with opened(args) as historian:
        events = await historian.points(
            EVENTS.name, start_ns=since_ns(args.since or DEFAULT_HISTORY_S)
        )
        found: dict[str, Labelled] = {r.id: r for r in reviewed(events)}
        found.update((s.id, s) for s in stops(events))
        target = found.get(args.id)
        if target is None:
            raise CommandError(
                f"no episode, incident or stop {args.id!r} in {args.historian_name} in the last "
                f"{(args.since or DEFAULT_HISTORY_S) / 3600:g} h; `shopfloor episodes` lists "
                "their ids, `shopfloor downtime --stops` those of stops (--since reaches "
                "further back)"
            )
        by = args.by or getpass.getuser()
        point = label_point(target, Verdict(args.verdict), by=by, at=time.time(), note=args.note)
        await historian.write_points([point])
    print(f"{target.id}: {args.verdict} (by {by})")
    return 0


async def _reviewed(historian: Historian, args: argparse.Namespace) -> list[Reviewed]:
    start = since_ns(args.since or DEFAULT_HISTORY_S)
    return reviewed(await historian.points(EVENTS.name, start_ns=start))


def _row(record: Reviewed) -> Row:
    verdict = record.verdict
    return {
        "id": record.id,
        "machines": record.machines,
        "top_signal": record.top_signal,
        "severity": severity(record.peak_severity),
        "until": "open" if record.end is None else iso(round(record.end * 1e9)),
        "verdict": verdict.verdict.value if verdict else None,
        "by": verdict.by if verdict else None,
        "note": verdict.note if verdict and verdict.note else None,
    }


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=parse_duration,
        metavar="TIME",
        help="how far back to look (e.g. 8h, 7d; default 24h)",
    )
    add_historian(parser)


def register(sub: Any) -> None:
    parser = command(
        sub,
        "episodes",
        list_episodes,
        "List the anomaly episodes and incidents (overlapping episodes of a line, named after "
        "the machine that moved first) with their ids, peak severity and the operator's verdict.",
    )
    parser.add_argument("--machine", help="only those this machine took part in")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    _common(parser)
    parser = command(
        sub,
        "label",
        label,
        "Give an episode, incident or stop an operator's verdict: a real fault, a false alarm or a "
        "planned stop; stored in the historian with who gave it and when.",
    )
    parser.add_argument(
        "id", help="the id, as `episodes` (or `downtime --stops` for a stop) lists it"
    )
    parser.add_argument(
        "--as",
        dest="verdict",
        required=True,
        choices=[v.value for v in Verdict],
        help="what it was",
    )
    parser.add_argument("--note", default="", help="why, for whoever reads it next")
    parser.add_argument("--by", help="who gives the verdict (default: the login name)")
    _common(parser)
