"""README.md keeps its promises (short, the two commands on its first screen, the test one run by
CI, a way to every docs page), and docs/simulator.md documents the simulated line as it is: its
machine table, OPC UA node layout and Modbus register map stay current with the line file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from plc_sim.spec import load_line
from plc_sim.tags import ExposedTag, exposed_tags
from shopfloor.cli import build_parser
from tests.docs.pages import DOCS, README, ROOT, blocks, links, text

SIMULATOR = DOCS / "simulator.md"
MAX_LINES = 300
FIRST_SCREEN = 30  # lines


def modbus_row(tag: ExposedTag) -> str:
    width = {"uint32": 2, "int32": 2, "float32": 2}.get(tag.dtype or "", 1)
    address = f"{tag.address}" if width == 1 else f"{tag.address}-{tag.address + width - 1}"
    kind = "bool" if tag.dtype == "bool" else tag.dtype
    order = tag.word_order if width > 1 else ""
    scale = "" if tag.scale in (None, 1.0) else f"x{tag.scale:g}"
    rw = "read/write" if tag.writable else "read"
    return (
        f"| {tag.unit_id} | {tag.machine} | {tag.signal} | {tag.table} | {address} | {kind} "
        f"| {order} | {scale} | {tag.unit} | {rw} |"
    )


def opcua_row(tag: ExposedTag) -> str:
    limits = f"{tag.min:g} … {tag.max:g}"
    return f"| {tag.machine} | {tag.signal} | `{tag.node_id}` | {tag.unit} | {limits} |"


def test_register_map_and_node_layout_match_the_line_file() -> None:
    page = text(SIMULATOR)
    missing = [
        row
        for tag in exposed_tags(load_line())
        for row in [modbus_row(tag) if tag.protocol == "modbus" else opcua_row(tag)]
        if row not in page
    ]
    assert not missing, "docs/simulator.md is out of date with the line file; missing rows:\n" + (
        "\n".join(missing)
    )


def test_the_machine_table_names_every_machine_and_how_it_speaks() -> None:
    lines = text(SIMULATOR).splitlines()
    start = lines.index("| machine | what it is | speaks |") + 2
    table = lines[start : start + lines[start:].index("")]
    documented = {row.split("|")[1].strip(): row.split("|")[3].strip() for row in table}
    speaks = {
        tag.machine: "OPC UA" if tag.protocol == "opcua" else f"Modbus TCP, unit {tag.unit_id}"
        for tag in exposed_tags(load_line())
    }
    assert documented == speaks


def test_readme_is_at_most_300_lines() -> None:
    assert len(text(README).splitlines()) <= MAX_LINES


def test_readme_names_the_two_commands_on_its_first_screen_and_ci_runs_the_test_one() -> None:
    readme = text(README)
    first_screen = "\n".join(readme.splitlines()[:FIRST_SCREEN])
    (first, *_) = [b for b in blocks(first_screen) if b.lang == "sh"]
    commands = [argv[:2] for argv in first.command_lines()]
    assert commands == [["./bin/shopfloor", "up"], ["./bin/test"]]
    for script in ("bin/shopfloor", "bin/test"):
        assert os.access(ROOT / script, os.X_OK), script
    # what the README says they do is what they do
    assert 'exec "$root/.venv/bin/shopfloor" "$@"' in text(ROOT / "bin/shopfloor")
    assert build_parser().parse_args(["up"]).command == "up"
    test = text(ROOT / "bin/test")
    assert ".venv/bin/ruff check ." in test and "-m pytest" in test
    ci = text(ROOT / ".ci" / "run").strip().splitlines()
    assert ci[-1] == "exec ./bin/test"


def test_readme_shows_a_picture_and_links_the_docs_index() -> None:
    targets = [target.partition("#")[0] for target in links(text(README))]
    assert "docs/index.md" in targets
    images = [t for t in targets if t.endswith(".png")]
    assert images and all((ROOT / Path(t)).is_file() for t in images)


def test_what_the_pages_say_of_the_pasteurizer_is_what_the_line_does() -> None:
    """The temperature a student is told to expect is the line file's setpoint."""
    setpoint = load_line().machines["pasteurizer"].params.setpoint_c  # type: ignore[union-attr]
    claims = [
        (page.name, float(found))
        for page in (README, DOCS / "index.md")
        for found in re.findall(r"pasteurizer holds? (\d+(?:\.\d+)?) °C", text(page))
    ]
    assert claims, "README.md and docs/index.md say what temperature the pasteurizer holds"
    assert all(value == setpoint for _, value in claims), (claims, setpoint)
