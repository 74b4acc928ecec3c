"""Config: Telegraf-style golden cases, one folder per case under testcases/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from connectors.opcua import Config, OpcUaInput, build
from connectors.opcua.nodeid import BrowsePath

HERE = Path(__file__).parent
CASES = sorted(p for p in (HERE / "testcases").iterdir() if p.is_dir())
SAMPLE = HERE.parents[2] / "connectors" / "opcua" / "sample.yaml"


def load_connectors(path: Path) -> list[Config]:
    """Stand-in for the shared loader: validate every opcua entry of a connectors file."""
    document = yaml.safe_load(path.read_text())
    return [Config.model_validate(e) for e in document["connectors"] if e.get("type") == "opcua"]


def test_cases_are_well_formed() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        markers = {(case / "expected_ok").exists(), (case / "expected_error.txt").exists()}
        assert markers == {True, False}, f"{case.name} needs exactly one expectation file"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: Path) -> None:
    error_file = case / "expected_error.txt"
    if not error_file.exists():
        assert load_connectors(case / "config.yaml")
        return
    with pytest.raises(ValidationError) as caught:
        load_connectors(case / "config.yaml")
    assert error_file.read_text().strip() in str(caught.value)


def test_defaults() -> None:
    (config,) = load_connectors(HERE / "testcases" / "ok_minimal" / "config.yaml")
    assert config.mode == "subscribe"
    assert (config.publishing_interval_ms, config.sampling_interval_ms) == (500, 250)
    assert (config.poll_interval_s, config.timeout_s) == (1.0, 5.0)
    assert config.max_items_per_subscription == 1000
    assert (config.reconnect.min_s, config.reconnect.max_s) == (0.5, 10.0)
    assert config.tags[0].deadband.type == "none"
    assert config.tags[0].line is None


def test_node_error_lands_on_the_node_field() -> None:
    with pytest.raises(ValidationError) as caught:
        load_connectors(HERE / "testcases" / "bad_node_numeric" / "config.yaml")
    (error,) = caught.value.errors()
    assert error["loc"] == ("tags", 0, "node")


def test_every_node_form_parses_to_its_address() -> None:
    (config,) = load_connectors(HERE / "testcases" / "ok_every_node_form" / "config.yaml")
    addresses = {tag.signal: tag.address() for tag in config.tags}
    assert isinstance(addresses["path"], BrowsePath)
    relative = addresses["relative"]
    assert isinstance(relative, BrowsePath)
    assert relative.start.identifier == "line1"


def test_sample_config_loads_and_builds() -> None:
    configs = load_connectors(SAMPLE)
    assert configs
    for config in configs:
        opcua_input = build(config, site="demo", line="line1")
        assert isinstance(opcua_input, OpcUaInput)
        assert (opcua_input.name, opcua_input.endpoint) == (config.name, config.endpoint)
        assert not opcua_input.stats.connected
