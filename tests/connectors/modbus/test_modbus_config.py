"""The modbus entry of a connectors file: defaults, parsed values, where errors land.

The golden cases in testcases/ run through the shared loader
(tests/connectors/test_connectors_file.py).
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import pytest

from connectors.config import ConfigError, load_config, parse_config
from connectors.modbus import build
from connectors.modbus.codec import DataType, WordOrder

HERE = Path(__file__).parent


def entries(path: Path) -> list:
    """The validated entries of a connectors file, through the shared loader."""
    return load_config(path).entries


def test_validated_values_and_defaults():
    (config,) = entries(HERE / "testcases" / "ok_all_types_and_orders" / "config.yaml")
    assert (config.host, config.port) == ("plc.local", 5020)
    tags = {t.signal: t for t in config.devices[0].tags}
    assert tags["d"].order is WordOrder.BADC  # lower case accepted
    assert tags["f"].type is DataType.UINT64  # upper case accepted
    assert tags["k"].type is DataType.BOOL  # implied for coils
    assert tags["g"].scale == 0.1 and tags["g"].offset == -40
    (minimal,) = entries(HERE / "testcases" / "ok_minimal" / "config.yaml")
    assert (minimal.port, minimal.timeout_s, minimal.poll_interval_s) == (502, 1.0, 1.0)
    device = minimal.devices[0]
    assert (device.unit, device.max_registers_per_read, device.max_bits_per_read) == (1, 125, 2000)
    assert device.max_gap == 0


def test_error_lands_on_the_field_to_fix():
    with pytest.raises(ConfigError) as caught:
        entries(HERE / "testcases" / "bad_float_on_coil" / "config.yaml")
    (problem,) = str(caught.value).splitlines()
    assert ": connectors[0].devices[0].tags[0].type: " in problem


def test_requests_in_flight_default_per_unit_and_per_connection(tmp_path: Path):
    (minimal,) = entries(HERE / "testcases" / "ok_minimal" / "config.yaml")
    assert minimal.in_flight == 16 and minimal.devices[0].max_in_flight == 1
    rtu = _file(tmp_path, "url: modbus+rtu://gw.local:4001", "")
    assert rtu.in_flight == 1


@pytest.mark.parametrize(
    ("connector", "device", "field", "fix"),
    [
        (
            "url: modbus+rtu://gw.local:4001\n    max_in_flight: 2",
            "",
            "max_in_flight",
            "set it to 1",
        ),
        ("url: modbus://plc.local\n    max_in_flight: 0", "", "max_in_flight", "use 1 for a"),
        ("url: modbus://plc.local", "max_in_flight: 65", "devices[0].max_in_flight", "use 1"),
        (
            "url: modbus://plc.local",
            "pause_s: 0.1\n        max_in_flight: 2",
            "devices[0].max_in_flight",
            "set max_in_flight: 1 or remove pause_s",
        ),
    ],
)
def test_bad_in_flight_settings_name_the_file_field_and_fix(
    tmp_path: Path, connector: str, device: str, field: str, fix: str
):
    with pytest.raises(ConfigError) as caught:
        _file(tmp_path, connector, device)
    (problem,) = str(caught.value).splitlines()
    assert str(tmp_path / "connectors.yaml") in problem
    assert f"connectors[0].{field}: " in problem and fix in problem


def _file(folder: Path, connector: str, device: str):
    path = folder / "connectors.yaml"
    path.write_text(
        "connectors:\n"
        "  - type: modbus\n"
        "    name: plc\n"
        f"    {connector}\n"
        "    devices:\n"
        "      - machine: press\n"
        f"        {device}\n"
        "        tags: [{signal: s, table: holding, address: 0, type: uint16}]\n"
    )
    (config,) = entries(path)
    return config


def test_a_plant_scale_file_holds_little_per_register() -> None:
    """60,000 registers must fit the connector's memory budget: what a loaded register keeps
    (its tag and what the connector plans for it: request, decoder, series key) is a few slotted
    records (a pydantic model per tag cost ~500 B, a per-register decode tuple ~90 B), and the
    load's peak, which the process keeps as RSS, holds no line number per key (~1 kB a tag)."""
    units, registers = 40, 125
    devices = [
        {
            "unit": unit,
            "machine": f"m{unit:03d}",
            "tags": [
                {"signal": f"r{i:03d}", "table": "holding", "address": i, "type": "uint16"}
                for i in range(registers)
            ],
        }
        for unit in range(1, units + 1)
    ]
    entry = {"type": "modbus", "name": "plant", "url": "modbus://plc.local", "devices": devices}
    text = json.dumps({"connectors": [entry]})  # JSON is YAML
    parse_config(text, Path("plant.yaml"))  # imports and schema caches are not the tags'
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        (config,) = parse_config(text, Path("plant.yaml")).entries
        load_peak = (tracemalloc.get_traced_memory()[1] - before) / (units * registers)
        connector = build(config, site="s", line="l")
        gc.collect()
        per_register = (tracemalloc.get_traced_memory()[0] - before) / (units * registers)
    finally:
        tracemalloc.stop()
    assert len(connector.requests) == units
    assert per_register < 400, f"{per_register:.0f} bytes per register"
    assert load_peak < 600, f"the load peaked at {load_peak:.0f} bytes per register"
