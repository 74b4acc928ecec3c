"""The `models` and `rollback` commands: every version of each machine's anomaly model (which
one is active, when and why each was made) and going back to an earlier one. A running `detect`
or `up` notices the change at its next cycle (analytics.model_store.ActiveVersions)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from analytics.model_store import active_version, machines, rollback, versions
from core.storage import Historian
from historian.sqlite import SQLiteHistorian
from shopfloor.options import CommandError, command
from shopfloor.query import Row, iso, table


def models_folder(args: argparse.Namespace, historian: Historian | None = None) -> Path:
    """--models, else `models/` next to the SQLite file (where `up` keeps them), else
    ./models."""
    if args.models is not None:
        return Path(args.models)
    if isinstance(historian, SQLiteHistorian):
        return Path(historian.path).parent / "models"
    return Path("models")


async def list_models(args: argparse.Namespace) -> int:
    """Print every version of every machine's model, the active one marked."""
    folder = models_folder(args)
    names = [args.machine] if args.machine else machines(folder)
    rows = [row for name in names for row in _rows(folder, name)]
    if not rows:
        raise CommandError(f"no models in {folder}; `shopfloor train` makes them")
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


async def roll_back(args: argparse.Namespace) -> int:
    """Make an earlier version of one machine's model the active one."""
    folder = models_folder(args)
    was = active_version(folder, args.machine)
    now = rollback(folder, args.machine, args.to)
    print(f"{args.machine}: model {now.name} is active (was v{was}): {now.reason}")
    return 0


def _rows(folder: Path, machine: str) -> list[Row]:
    found = versions(folder, machine)
    if not found:
        have = ", ".join(machines(folder)) or "none"
        raise CommandError(f"no model of machine {machine!r} in {folder} (machines: {have})")
    active = active_version(folder, machine)
    return [
        {
            "machine": machine,
            "version": v.name,
            "active": v.version == active,
            "created": iso(round(v.created * 1e9)),
            "reason": v.reason,
            "parent": None if v.parent is None else f"v{v.parent}",
            "labels_learnt": len(v.labels),
        }
        for v in found
    ]


def _version(text: str) -> int:
    found = re.fullmatch(r"v?([0-9]+)", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version like v3 (see `models`)")
    return int(found[1])


def add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="the models folder (default: models/ next to the SQLite file, else ./models)",
    )


def register(sub: Any) -> None:
    parser = command(
        sub,
        "models",
        list_models,
        "List every version of each machine's anomaly model: when and why it was made (trained, "
        "learnt from a false alarm label), what it came from, and which one is active.",
    )
    parser.add_argument("machine", nargs="?", help="only this machine's versions")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_models(parser)
    parser = command(
        sub,
        "rollback",
        roll_back,
        "Make an earlier version of a machine's model the active one (by default the one the "
        "active version was made from); a running detector picks it up within a cycle.",
    )
    parser.add_argument("machine", help="the machine, as `models` lists it")
    parser.add_argument("--to", type=_version, metavar="VERSION", help="the version, e.g. v2")
    add_models(parser)
