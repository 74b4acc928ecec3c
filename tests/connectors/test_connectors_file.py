"""The shared connectors-file loader: every plugin's golden cases, and what the loader adds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.config import ConfigError, load_config, parse_config

HERE = Path(__file__).parent
CASES = sorted(p for p in HERE.glob("*/testcases/*") if p.is_dir())
REPO = HERE.parents[1]


def test_every_plugin_keeps_golden_cases() -> None:
    plugins = {case.parent.parent.name for case in CASES}
    assert plugins == {"modbus", "opcua"}
    for case in CASES:
        markers = {(case / "expected_ok").exists(), (case / "expected_error.txt").exists()}
        assert markers == {True, False}, f"{case} needs exactly one expectation file"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.parent.name}/{c.name}" for c in CASES])
def test_golden_case(case: Path) -> None:
    config_file = case / "config.yaml"
    error_file = case / "expected_error.txt"
    if not error_file.exists():
        assert load_config(config_file).entries
        return
    with pytest.raises(ConfigError) as caught:
        load_config(config_file)
    message = str(caught.value)
    assert error_file.read_text().strip() in message
    # every problem names the file, the line and the field
    for line in message.splitlines():
        assert re.match(rf"{re.escape(str(config_file))}:\d+: \S+: .+", line), line


@pytest.mark.parametrize(
    "sample", sorted(REPO.glob("connectors/*/sample.yaml")), ids=lambda p: p.parent.name
)
def test_plugin_sample_configs_load_and_build(sample: Path) -> None:
    inputs = load_config(sample).build_inputs()
    assert inputs
    assert all(not item.stats.connected for item in inputs)


def parse(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("plant.yaml"))
    return str(caught.value)


MODBUS_ENTRY = """\
  - type: modbus
    name: vfd
    url: modbus://10.0.0.5
    devices:
      - machine: conveyor
        tags:
          - {signal: speed_hz, table: holding, address: 0, type: int16, scale: 0.1}
"""


def test_a_valid_file_keeps_site_line_and_order() -> None:
    text = "site: plant7\nline: bottling\nconnectors:\n" + MODBUS_ENTRY
    config = parse_config(text, Path("plant.yaml"))
    assert (config.site, config.line) == ("plant7", "bottling")
    (item,) = config.build_inputs()
    assert (item.name, item.endpoint) == ("vfd", "modbus://10.0.0.5")


def test_the_error_points_at_the_line_of_the_bad_field() -> None:
    text = "connectors:\n" + MODBUS_ENTRY.replace("type: int16", "type: int17")
    message = parse(text)
    assert message.startswith("plant.yaml:8: connectors[0].devices[0].tags[0].type: ")


def test_unknown_connector_type_lists_the_known_ones() -> None:
    message = parse("connectors:\n  - type: profinet\n    name: x\n")
    assert message == (
        "plant.yaml:2: connectors[0].type: unknown connector type 'profinet'; "
        "use one of: modbus, opcua"
    )


def test_a_misspelt_field_gets_a_suggestion() -> None:
    text = "connectors:\n" + MODBUS_ENTRY.replace("    url:", "    ulr:")
    message = parse(text)
    assert "plant.yaml:4: connectors[0].ulr: unknown field; did you mean 'url'?" in message


def test_every_problem_is_reported_at_once() -> None:
    text = "connectors:\n" + MODBUS_ENTRY + MODBUS_ENTRY.replace("int16", "int17")
    message = parse(text)
    assert "connectors[1].devices[0].tags[0].type" in message
    assert "plant.yaml:10: connectors[1].name: connector name 'vfd' is used twice" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "plant.yaml: the file is empty"),
        ("connectors: [\n", "plant.yaml:2: not valid YAML"),
        ("- a\n- b\n", "plant.yaml:1: the file must be a mapping"),
        ("connectors: []\n", "plant.yaml:1: connectors: List should have at least 1 item"),
        ("site: x\n", "plant.yaml:1: connectors: required field is missing; add `connectors:`"),
    ],
)
def test_malformed_files(text: str, expected: str) -> None:
    assert parse(text).startswith(expected)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read the connectors file"):
        load_config(Path("nowhere.yaml"))


def test_every_name_the_historian_could_not_store_is_refused_at_once() -> None:
    """Newlines, other control characters and a trailing backslash in any name: each offender
    is listed (file:line: field), not just the first, before anything starts."""
    config = HERE / "modbus" / "testcases" / "bad_names_control_characters" / "config.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    problems = str(caught.value).splitlines()
    fields = [line.split(": ")[1] for line in problems]
    assert fields == [
        "site",
        "line",
        "connectors[0].name",
        "connectors[0].devices[0].machine",
        "connectors[0].devices[0].tags[1].signal",
        "connectors[0].devices[0].tags[2].signal",
    ]
    assert all(line.endswith("which the historian cannot store; remove it") for line in problems)
    assert [int(line.split(":")[1]) for line in problems] == [1, 2, 5, 8, 11, 12]
