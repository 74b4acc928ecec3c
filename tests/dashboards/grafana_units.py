"""Grafana's unit ids, as the tests check the dashboards' units against them.

The list is the `id` of every format in @grafana/data's valueFormats categories, the table
Grafana's unit picker and value formatting use. It is vendored (grafana-units.json, with the
package version it came from) so the suite runs without the network; regenerate it for
another Grafana with

    .venv/bin/python -m tests.dashboards.grafana_units 11.6.0

which runs `npm pack @grafana/data@VERSION` in a temporary folder and reads the ids out of
dist/esm/valueFormats/categories.mjs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

UNITS_FILE = Path(__file__).with_name("grafana-units.json")
CATEGORIES = "package/dist/esm/valueFormats/categories.mjs"
# Units Grafana builds from a prefix (valueFormats.getValueFormat): suffix:TEXT, prefix:TEXT, ...
CUSTOM_PREFIXES = ("suffix:", "prefix:", "time:", "si:", "count:", "currency:", "bool:")


def unit_ids(categories_js: str) -> list[str]:
    """The `id: "..."` of every format entry in the categories module, in its order."""
    return re.findall(r'\bid:\s*"([^"]+)"', categories_js)


def is_grafana_unit(unit: str, ids: set[str]) -> bool:
    """Whether Grafana formats `unit` as a unit (not as the literal text after the number)."""
    return unit in ids or (unit.startswith(CUSTOM_PREFIXES) and unit.partition(":")[2] != "")


def load() -> tuple[str, set[str]]:
    """(package version, unit ids) of the vendored list."""
    data = json.loads(UNITS_FILE.read_text(encoding="utf-8"))
    return data["package"], set(data["ids"])


def regenerate(version: str) -> list[str]:
    """Fetch @grafana/data@version with npm and write UNITS_FILE; the ids found."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            ["npm", "pack", f"@grafana/data@{version}"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        archive = Path(folder) / done.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            member = tar.extractfile(CATEGORIES)
            if member is None:
                raise SystemExit(f"{archive.name} has no {CATEGORIES}")
            ids = unit_ids(member.read().decode("utf-8"))
    if len(ids) < 100 or len(ids) != len(set(ids)):
        raise SystemExit(f"{CATEGORIES} looks different: {len(ids)} ids; check the parser")
    UNITS_FILE.write_text(
        json.dumps({"package": f"@grafana/data@{version}", "ids": ids}, indent=1) + "\n",
        encoding="utf-8",
    )
    return ids


if __name__ == "__main__":
    found = regenerate(sys.argv[1] if len(sys.argv) > 1 else "11.6.0")
    print(f"{len(found)} unit ids written to {UNITS_FILE}")
