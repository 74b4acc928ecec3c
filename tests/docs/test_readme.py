"""The README documents the simulated line as it is: register map and node layout stay current."""

from __future__ import annotations

from pathlib import Path

from plc_sim.spec import load_line
from plc_sim.tags import ExposedTag, exposed_tags

README = Path(__file__).parents[2] / "README.md"


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
    text = README.read_text()
    missing = [
        row
        for tag in exposed_tags(load_line())
        for row in [modbus_row(tag) if tag.protocol == "modbus" else opcua_row(tag)]
        if row not in text
    ]
    assert not missing, "README.md is out of date with the line file; missing rows:\n" + "\n".join(
        missing
    )


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    assert "./bin/shopfloor up" in text and "./bin/test" in text
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "exec ./bin/test"
