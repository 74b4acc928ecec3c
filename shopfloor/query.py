"""The `query` command: what the historian holds, as a table or JSON: the latest value of each
signal, the events (injected faults, anomaly episodes) or each machine's latest anomaly
severity. Values show the digits their tag carries and units as core.units spells them;
severity, never a raw score (core.severity)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.sample import Point
from core.schema import ANOMALY, EVENTS
from core.severity import severity_level
from core.storage import Historian, Reading
from core.units import format_value, unit_of
from shopfloor.connect import opened
from shopfloor.durations import parse_duration
from shopfloor.options import add_historian, command

DEFAULT_HISTORY_S = 3600.0  # --events and --anomalies without --since: the last hour

Row = dict[str, object]


async def query(args: argparse.Namespace) -> int:
    """Print what was asked for; exit 1 when the historian holds nothing that matches."""
    async with opened(args) as historian:
        if args.events:
            rows = await _events(historian, args)
        elif args.anomalies:
            rows = await _anomalies(historian, args)
        else:
            rows = await _latest(historian, args)
    if not rows:
        print(f"no data in {args.historian_name} for these filters", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else table([_quoted(r) for r in rows]))
    return 0


def _quoted(row: Row) -> Row:
    """A text value in quotes in the table, so that "" and " 7" read as what they are."""
    text = row.get("text")
    return {**row, "text": json.dumps(text, ensure_ascii=False)} if text is not None else row


async def _latest(historian: Historian, args: argparse.Namespace) -> list[Row]:
    newer = since_ns(args.since)
    readings = await historian.latest(machine=args.machine, signal=args.signal, since_ns=newer)
    readings.sort(key=lambda r: (r.line, r.machine, r.signal))
    return [_reading(r) for r in readings]


def _reading(reading: Reading) -> Row:
    shown = format_value(reading.value)
    return {
        "line": reading.line,
        "machine": reading.machine,
        "signal": reading.signal,
        "value": float(shown) if math.isfinite(reading.value) else None,
        "text": reading.text,
        "unit": unit_of(reading.signal),
        "quality": reading.quality.name.lower(),
        "time": iso(reading.ts),
    }


async def _events(historian: Historian, args: argparse.Namespace) -> list[Row]:
    points = await historian.points(
        EVENTS.name, tags=_machine(args), start_ns=since_ns(args.since or DEFAULT_HISTORY_S)
    )
    return [
        {
            "time": iso(p.ts),
            "machine": p.tags.get("machine", ""),
            "kind": p.tags.get("kind", ""),
            "active": bool(p.fields.get("active")),
            "severity": severity(p.fields.get("peak_severity")),
            "top_signal": p.fields.get("top_signal"),
            "text": p.fields.get("text", ""),
        }
        for p in points
    ]


async def _anomalies(historian: Historian, args: argparse.Namespace) -> list[Row]:
    points = await historian.points(
        ANOMALY.name, tags=_machine(args), start_ns=since_ns(args.since or DEFAULT_HISTORY_S)
    )
    newest: dict[str, Point] = {p.tags.get("machine", ""): p for p in points}  # time order
    return [_anomaly(machine, newest[machine]) for machine in sorted(newest)]


def _anomaly(machine: str, point: Point) -> Row:
    shown = severity(point.fields.get("severity"))
    return {
        "time": iso(point.ts),
        "machine": machine,
        "severity": shown,
        "level": severity_level(math.nan if shown is None else shown).name.lower(),
        "flagged": bool(point.fields.get("is_anomaly")),
        "top_signal": point.fields.get("top_signal"),
    }


def _machine(args: argparse.Namespace) -> dict[str, str]:
    return {"machine": args.machine} if args.machine else {}


def since_ns(since_s: float | None) -> int | None:
    return time.time_ns() - int(since_s * 1e9) if since_s else None


def severity(value: object) -> float | None:
    """Severity to one decimal, as everything a person reads shows it."""
    return round(value, 1) if isinstance(value, float) and math.isfinite(value) else None


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def table(rows: Sequence[Row]) -> str:
    """Rows as aligned columns, headed by their keys; the line (one per file) is left out."""
    keys = [k for k in rows[0] if k != "line"]
    cells = [[k.upper().replace("_", " ") for k in keys]]
    cells += [[_cell(row[k]) for k in keys] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_value(value)
    return str(value)


def register(sub: Any) -> None:
    parser = command(
        sub,
        "query",
        query,
        "Show what the historian holds: the latest value of every signal (filtered), the events "
        "(injected faults and anomaly episodes) or each machine's anomaly severity.",
    )
    parser.add_argument("--machine", help="only this machine")
    parser.add_argument("--signal", help="only this signal (latest values)")
    parser.add_argument(
        "--since",
        type=parse_duration,
        metavar="TIME",
        help="only what is newer than this (e.g. 5m, 1h; for --events and --anomalies the "
        "default is 1h)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--events",
        action="store_true",
        help="list the events: injected faults (kind fault, the ground truth) and anomaly "
        "episodes (kind anomaly, with top signal and peak severity)",
    )
    what.add_argument(
        "--anomalies",
        action="store_true",
        help="each machine's newest anomaly point: severity (the score as a multiple of its "
        "limit, 0-10), level, whether it is flagged and the top signal",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_historian(parser)
