"""The `episodes` and `label` commands: the anomaly episodes and incidents the detector found,
each with the id an operator labels it by, and an operator's verdict on one (fault, false alarm
or planned), stored in the historian as a label event with who and when (analytics.labels). A
false alarm is learnt at once by the models of the machines it flagged, as new model versions
(analytics.learning), which a running detector picks up at its next cycle."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from analytics.labels import Reviewed, label_point, reviewed
from analytics.learning import Learnt, learn_label
from core.schema import EVENTS, Verdict
from core.storage import Historian
from shopfloor.connect import opened
from shopfloor.durations import parse_duration
from shopfloor.models import add_models, models_folder
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
    """Store the verdict on the episode or incident `args.id`."""
    async with opened(args) as historian:
        found = {r.id: r for r in await _reviewed(historian, args)}
        target = found.get(args.id)
        if target is None:
            raise CommandError(
                f"no episode or incident {args.id!r} in {args.historian_name} in the last "
                f"{(args.since or DEFAULT_HISTORY_S) / 3600:g} h; `shopfloor episodes` lists "
                "their ids (--since reaches further back)"
            )
        by = args.by or getpass.getuser()
        point = label_point(target, Verdict(args.verdict), by=by, at=time.time(), note=args.note)
        await historian.write_points([point])
        print(f"{target.id}: {args.verdict} (by {by})")
        if args.verdict == Verdict.FALSE_ALARM:
            for learnt in await _learn(historian, target, args):
                print(f"  {learnt.machine}: {learnt.outcome}")
    return 0


async def _learn(historian: Historian, target: Reviewed, args: argparse.Namespace) -> list[Learnt]:
    """The false alarm learnt by the models of every machine it flagged."""
    folder = models_folder(args, historian)
    end = target.end if target.end is not None else time.time()
    machines = target.machines.split(",")
    return await learn_label(historian, folder, target.id, machines, target.start, end)


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
        "Give an episode or incident an operator's verdict: a real fault, a false alarm or a "
        "planned stop; stored in the historian with who gave it and when. A false alarm is "
        "learnt by the models of the machines it flagged: each gets a new version (see "
        "`models`, `rollback`) to which that pattern is normal.",
    )
    parser.add_argument("id", help="the episode's or incident's id, as `episodes` lists it")
    parser.add_argument(
        "--as",
        dest="verdict",
        required=True,
        choices=[v.value for v in Verdict],
        help="what it was",
    )
    parser.add_argument("--note", default="", help="why, for whoever reads it next")
    parser.add_argument("--by", help="who gives the verdict (default: the login name)")
    add_models(parser)
    _common(parser)
