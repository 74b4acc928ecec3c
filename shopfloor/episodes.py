"""The `episodes` and `label` commands: the anomaly episodes and incidents the detector found,
each with the id an operator labels it by, and an operator's verdict on one (fault, false alarm
or planned), stored in the historian as a label event with who and when (analytics.labels). A
false alarm is learnt at once by the models of the machines it flagged, as new model versions
(analytics.learning), which a running detector picks up at its next cycle. `plan` announces a
machine's planned period (cleaning, maintenance), in which the detector opens no episode
(analytics.planned); `episodes` lists those periods too. A machine's stop (analytics.downtime,
listed by `downtime --stops`) is labelled the same way."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from analytics.downtime import stops
from analytics.labels import Labelled, Reviewed, label_point, reviewed
from analytics.learning import Learnt, learn_label
from analytics.model_store import machines
from analytics.planned import PlannedPeriod, plan_point, planned_periods
from core.sample import Point
from core.schema import EVENTS, Verdict
from core.storage import Historian
from shopfloor.connect import opened
from shopfloor.durations import parse_time
from shopfloor.models import add_models, models_folder
from shopfloor.options import CommandError, add_historian, add_since, command
from shopfloor.query import Row, iso, severity, since_ns, table

DEFAULT_HISTORY_S = 86_400.0  # a day: the shift's and the night's episodes


async def list_episodes(args: argparse.Namespace) -> int:
    """Print the episodes and incidents, newest last; exit 1 when there are none."""
    async with opened(args) as historian:
        events = await _events(historian, args)
    dated = [(r.start, _row(r)) for r in reviewed(events)]
    dated += [(p.start, _plan_row(p)) for p in planned_periods(events)]
    rows = [
        row
        for _, row in sorted(dated, key=lambda item: item[0])
        if not args.machine or args.machine in str(row["machines"]).split(",")
    ]
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
        if args.verdict == Verdict.FALSE_ALARM and isinstance(target, Reviewed):  # not a stop
            for learnt in await _learn(historian, target, args):
                print(f"  {learnt.machine}: {learnt.outcome}")
    return 0


async def _learn(historian: Historian, target: Reviewed, args: argparse.Namespace) -> list[Learnt]:
    """The false alarm learnt by the models of every machine it flagged."""
    folder = models_folder(args, historian)
    end = target.end if target.end is not None else time.time()
    machines = target.machines.split(",")
    return await learn_label(historian, folder, target.id, machines, target.start, end)


async def _events(historian: Historian, args: argparse.Namespace) -> list[Point]:
    return await historian.points(EVENTS.name, start_ns=since_ns(args.since or DEFAULT_HISTORY_S))


async def _reviewed(historian: Historian, args: argparse.Namespace) -> list[Reviewed]:
    return reviewed(await _events(historian, args))


async def plan(args: argparse.Namespace) -> int:
    """Store a machine's planned period: the detector opens no episode of it then."""
    start = args.start if args.start is not None else time.time()
    if args.end <= start:
        raise CommandError("--to must be later than --from")
    async with opened(args) as historian:
        known = machines(models_folder(args, historian))
        if known and args.machine not in known:
            raise CommandError(
                f"no machine {args.machine!r} has a model (machines: {', '.join(known)})"
            )
        by = args.by or getpass.getuser()
        period = PlannedPeriod(args.machine, start, args.end, args.note, by)
        await historian.write_points([plan_point(period)])
    print(f"{period.id}: planned until {iso(round(period.end * 1e9))}")
    return 0


def _plan_row(period: PlannedPeriod) -> Row:
    return {
        "id": period.id,
        "machines": period.machine,
        "top_signal": None,
        "severity": None,
        "until": iso(round(period.end * 1e9)),
        "verdict": "planned",
        "by": period.by or None,
        "note": period.note or None,
    }


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
    add_since(parser)
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
        "Give an episode, incident or stop an operator's verdict: a real fault, a false alarm "
        "or a planned stop; stored in the historian with who gave it and when. A false alarm "
        "is learnt by the models of the machines it flagged: each gets a new version (see "
        "`models`, `rollback`) to which that pattern is normal.",
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
    add_models(parser)
    _common(parser)
    parser = command(
        sub,
        "plan",
        plan,
        "Announce a planned period of a machine (cleaning, a changeover, maintenance): the "
        "detector still scores it but opens no episode then; `episodes` lists it.",
    )
    parser.add_argument("machine", help="the machine, as the historian names it")
    parser.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        metavar="TIME",
        help="start: an ISO time (UTC unless given) or a duration ago (default: now)",
    )
    parser.add_argument(
        "--to", dest="end", type=parse_time, required=True, metavar="TIME", help="end: an ISO time"
    )
    parser.add_argument("--note", default="", help="what is planned, for whoever reads it")
    parser.add_argument("--by", help="who plans it (default: the login name)")
    add_models(parser)
    add_historian(parser)
