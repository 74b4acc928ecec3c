"""The line file: the default loads; broken copies fail with one message naming file and field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from plc_sim.machines import MACHINE_TYPES
from plc_sim.spec import DEFAULT_LINE, LineSpec, LineSpecError, load_line
from plc_sim.tags import exposed_tags

Edit = Callable[[dict[str, Any]], None]


def test_default_line_loads(line: LineSpec):
    assert line.line == "line1"
    assert {m.kind for m in line.machines.values()} == set(MACHINE_TYPES)
    assert [f.fault for f in line.faults] == ["bearing_wear"]
    for name, machine in line.machines.items():
        assert "state" in machine.signals, name


def test_default_modbus_layout_uses_every_encoding(line: LineSpec):
    """The brief's coverage promise: x10, x100, uint16, both float orders, a counter, bits."""
    tags = [t for t in exposed_tags(line) if t.protocol == "modbus"]
    seen = {(t.table, t.dtype, t.word_order, t.scale) for t in tags}
    assert {("holding", "int16", "ABCD", 0.1), ("input", "int16", "ABCD", 0.01)} <= seen
    assert any(t.dtype == "uint16" and t.scale == 1.0 for t in tags)
    assert any(t.dtype == "float32" and t.word_order == "ABCD" for t in tags)
    assert any(t.dtype == "float32" and t.word_order == "CDAB" for t in tags)
    assert any(t.dtype == "uint32" and t.kind == "total" for t in tags)
    assert any(t.table == "coil" and t.writable for t in tags)
    assert any(t.table == "discrete" and t.signal.startswith("alarm_") for t in tags)
    assert {t.unit_id for t in tags} == {1, 2, 3}


def test_exposed_tags_are_complete(line: LineSpec):
    tags = exposed_tags(line)
    assert len(tags) == sum(len(m.signals) for m in line.machines.values())
    capper_torque = next(t for t in tags if (t.machine, t.signal) == ("capper", "cap_torque_nm"))
    assert capper_torque.node_id == "ns=2;s=line1.capper.cap_torque_nm"
    assert (capper_torque.unit, capper_torque.min, capper_torque.max) == ("Nm", 0, 5)
    speed = next(t for t in tags if (t.machine, t.signal) == ("conveyor", "speed_hz"))
    assert (speed.unit_id, speed.table, speed.address, speed.dtype, speed.scale) == (
        1,
        "holding",
        1,
        "int16",
        0.01,
    )


def _set(path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return edit


def _delete(path: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[key]
        del node[last]

    return edit


SIGNALS = "machines.conveyor.signals"
CASES: dict[str, tuple[Edit, list[str]]] = {
    "unknown fault": (
        _set("faults.0.fault", "gremlins"),
        ["faults.0", "unknown fault 'gremlins'", "bearing_wear"],
    ),
    "fault on the wrong machine": (
        _set("faults.0.machine", "capper"),
        ["faults.0", "does not apply to 'capper'", "conveyor"],
    ),
    "missing unit": (
        _delete("machines.filler.signals.fill_rate_bpm.unit"),
        ["machines.filler.signals.fill_rate_bpm.unit", "required field is missing; add it"],
    ),
    "unknown unit": (
        _set("machines.filler.signals.fill_rate_bpm.unit", "bpm"),
        ["machines.filler.signals.fill_rate_bpm.unit", "unknown unit 'bpm'", "1/min"],
    ),
    "overlapping registers": (
        _set(f"{SIGNALS}.current_a.modbus.address", 1),
        [f"{SIGNALS}.current_a.modbus.address", "overlaps 'speed_hz'", "move it to 2"],
    ),
    "float overlapping the next float": (
        _set(f"{SIGNALS}.power_kw.modbus.address", 17),
        ["holding address", "overlaps", "power_kw", "vibration_mm_s", "move it to 19"],
    ),
    "signal on the alarm bits": (
        _set(f"{SIGNALS}.alarm_overload.modbus.address", 17),
        [f"{SIGNALS}.alarm_overload.modbus", "discrete 16..31 are the device's alarm bits"],
    ),
    "bad protocol": (
        _set("machines.capper.protocol", "profinet"),
        ["machines.capper.protocol", "'opcua' or 'modbus'"],
    ),
    "unknown machine kind": (
        _set("machines.capper.kind", "robot"),
        ["machines.capper", "unknown machine kind 'robot'", "capper"],
    ),
    "unknown signal": (
        _set("machines.capper.signals.colour", {"unit": "1", "min": 0, "max": 1}),
        ["machines.capper.signals.colour", "no signal 'colour'", "cap_torque_nm"],
    ),
    "misspelt param": (
        _set("machines.conveyor.params.belt_load", 100),
        ["machines.conveyor.params.belt_load", "unknown field"],
    ),
    "range beyond int16 at x100": (
        _set(f"{SIGNALS}.speed_hz.max", 400),
        [f"{SIGNALS}.speed_hz.modbus", "beyond int16", "coarser scale or a wider type"],
    ),
    "modbus mapping missing": (
        _delete(f"{SIGNALS}.dc_bus_v.modbus"),
        [f"{SIGNALS}.dc_bus_v", "needs `modbus:"],
    ),
    "float in a coil": (
        _set(f"{SIGNALS}.vibration_mm_s.modbus", {"table": "coil", "address": 5}),
        [f"{SIGNALS}.vibration_mm_s.modbus", "holds one bit"],
    ),
    "duplicate unit id": (
        _set("machines.air_compressor.unit_id", 1),
        ["machines.air_compressor.unit_id", "already used by conveyor"],
    ),
    "dangling reference": (
        _set("machines.filler.params.infeed", "belt2"),
        ["machines.filler.params.infeed", "'belt2' is not a machine of kind conveyor"],
    ),
    "planned stop of an unknown machine": (
        _set("stops.0.machine", "labeller"),
        ["stops.0.machine", "no machine 'labeller'", "machines: pasteurizer"],
    ),
    "planned stop for a reason that is not planned": (
        _set("stops.0.reason", "jam"),
        ["stops.0.reason", "'cleaning', 'changeover' or 'maintenance'"],
    ),
    "min above max": (
        _set("machines.capper.signals.cap_torque_nm.min", 9),
        ["machines.capper.signals.cap_torque_nm.min", "must be below max"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_copy_is_explained(case: str, tmp_path: Path):
    edit, expected = CASES[case]
    doc = yaml.safe_load(DEFAULT_LINE.read_text())
    edit(doc)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(LineSpecError) as caught:
        load_line(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid line file:")
    assert "line " in message  # points at the line of the file
    for part in expected:
        assert part in message
    assert "pydantic" not in message and "Traceback" not in message


def test_line_number_points_at_the_field(tmp_path: Path):
    text = DEFAULT_LINE.read_text().replace(
        "cap_torque_nm: {unit: Nm,", "cap_torque_nm: {unit: Nmm,"
    )
    path = tmp_path / "line.yaml"
    path.write_text(text)
    expected = 1 + next(i for i, row in enumerate(text.splitlines()) if "unit: Nmm" in row)
    with pytest.raises(LineSpecError, match=f"line {expected}: machines.capper.signals"):
        load_line(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("line: [unclosed", "not valid YAML"), ("- just\n- a list\n", "is a mapping")],
)
def test_not_a_line_file(text: str, expected: str, tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LineSpecError, match=expected):
        load_line(path)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(LineSpecError, match=r"nope\.yaml: cannot read"):
        load_line(tmp_path / "nope.yaml")
