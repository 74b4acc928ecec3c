"""Write the dashboard JSON that Grafana loads: `python -m dashboards.build` (from the repo root).

The JSON in dashboards/json/ is generated, committed and mounted into Grafana by compose; edit
the Python modules, never the JSON. `--check` says whether the files are current without
writing them (the tests do the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dashboards import anomalies, connectors_health, line_overview, machine_detail
from dashboards.panels import Json

JSON_DIR = Path(__file__).parent / "json"
COMMAND = "python -m dashboards.build"
DASHBOARDS: dict[str, Callable[[], Json]] = {
    "line-overview.json": line_overview.build,
    "machine-detail.json": machine_detail.build,
    "anomalies.json": anomalies.build,
    "connectors-health.json": connectors_health.build,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard, as written to JSON_DIR."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def stale(folder: Path = JSON_DIR) -> list[str]:
    """Files in `folder` that differ from what the code generates, are missing or are extra."""
    wanted = render()
    found = {path.name for path in folder.glob("*.json")}
    differ = [
        name
        for name, text in wanted.items()
        if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text
    ]
    return sorted(set(differ) | (found - wanted.keys()))


def write(folder: Path = JSON_DIR) -> list[str]:
    """Bring `folder` up to date; the names of the files changed or removed."""
    changed = stale(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = render()
    for name in changed:
        if name in wanted:
            (folder / name).write_text(wanted[name], encoding="utf-8")
        else:
            (folder / name).unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether files are current")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        if outdated:
            print(f"stale in {JSON_DIR}: {', '.join(outdated)}; run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    changed = write()
    print(
        f"{len(changed)} file(s) updated in {JSON_DIR}"
        + (f": {', '.join(changed)}" if changed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
