"""Config: Telegraf-style golden cases, one folder per case under testcases/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from connectors.modbus import Config, build
from connectors.modbus.codec import DataType, WordOrder

HERE = Path(__file__).parent
CASES = sorted(p for p in (HERE / "testcases").iterdir() if p.is_dir())
SAMPLE = HERE.parents[2] / "connectors" / "modbus" / "sample.yaml"


def load_connectors(path: Path) -> list[Config]:
    """Stand-in for the shared loader: validate every entry of a connectors file."""
    document = yaml.safe_load(path.read_text())
    return [Config.model_validate(entry) for entry in document["connectors"]]


def test_cases_are_well_formed():
    assert len(CASES) >= 20
    for case in CASES:
        markers = {(case / "expected_ok").exists(), (case / "expected_error.txt").exists()}
        assert markers == {True, False}, f"{case.name} needs exactly one expectation file"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: Path):
    error_file = case / "expected_error.txt"
    if not error_file.exists():
        assert load_connectors(case / "config.yaml")
        return
    with pytest.raises(ValidationError) as caught:
        load_connectors(case / "config.yaml")
    assert error_file.read_text().strip() in str(caught.value)


def test_validated_values_and_defaults():
    (config,) = load_connectors(HERE / "testcases" / "ok_all_types_and_orders" / "config.yaml")
    assert (config.host, config.port) == ("plc.local", 5020)
    tags = {t.signal: t for t in config.devices[0].tags}
    assert tags["d"].order is WordOrder.BADC  # lower case accepted
    assert tags["f"].type is DataType.UINT64  # upper case accepted
    assert tags["k"].type is DataType.BOOL  # implied for coils
    assert tags["g"].scale == 0.1 and tags["g"].offset == -40
    (minimal,) = load_connectors(HERE / "testcases" / "ok_minimal" / "config.yaml")
    assert (minimal.port, minimal.timeout_s, minimal.poll_interval_s) == (502, 1.0, 1.0)
    device = minimal.devices[0]
    assert (device.unit, device.max_registers_per_read, device.max_bits_per_read) == (1, 125, 2000)
    assert device.max_gap == 0


def test_error_lands_on_the_field_to_fix():
    with pytest.raises(ValidationError) as caught:
        load_connectors(HERE / "testcases" / "bad_float_on_coil" / "config.yaml")
    (error,) = caught.value.errors()
    assert error["loc"] == ("devices", 0, "tags", 0, "type")


def test_sample_config_loads_and_builds():
    configs = load_connectors(SAMPLE)
    assert configs
    for config in configs:
        modbus_input = build(config, site="demo", line="line1")
        assert modbus_input.name == config.name
        assert modbus_input.requests
