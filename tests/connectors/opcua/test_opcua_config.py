"""The opcua entry of a connectors file: defaults, parsed values, where errors land.

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
from connectors.opcua.nodeid import BrowsePath
from connectors.opcua.security import Security

HERE = Path(__file__).parent


def entries(path: Path) -> list:
    """The validated entries of a connectors file, through the shared loader."""
    return load_config(path).entries


def test_defaults() -> None:
    (config,) = entries(HERE / "testcases" / "ok_minimal" / "config.yaml")
    assert config.mode == "subscribe"
    assert (config.publishing_interval_ms, config.sampling_interval_ms) == (500, None)
    assert (config.poll_interval_s, config.timeout_s) == (1.0, 5.0)
    assert config.max_items_per_subscription == 1000
    assert (config.reconnect.min_s, config.reconnect.max_s) == (0.5, 10.0)
    assert config.tags[0].deadband.type == "none"
    assert config.tags[0].line is None


def test_node_error_lands_on_the_node_field() -> None:
    with pytest.raises(ConfigError) as caught:
        entries(HERE / "testcases" / "bad_node_numeric" / "config.yaml")
    (problem,) = str(caught.value).splitlines()
    assert ": connectors[0].tags[0].node: " in problem


def test_every_node_form_parses_to_its_address() -> None:
    (config,) = entries(HERE / "testcases" / "ok_every_node_form" / "config.yaml")
    addresses = {tag.signal: tag.address() for tag in config.tags}
    assert isinstance(addresses["path"], BrowsePath)
    relative = addresses["relative"]
    assert isinstance(relative, BrowsePath)
    assert relative.start.identifier == "line1"


def test_file_paths_are_relative_to_the_config_file() -> None:
    case = HERE / "testcases" / "ok_paths_relative_to_file"
    relative, default_pki = entries(case / "config.yaml")
    assert relative.security.pki == case / "plant_pki"
    assert relative.security.certificate_file == case / "certs" / "connector.der"
    assert relative.security.private_key_file == case / ".." / "keys" / "connector.pem"
    assert relative.security.server_certificate == Path("/etc/shopfloor/plc.der")
    assert relative.auth.password_file == case / "secrets" / "plc_password"
    # the default pki folder is next to the file too, and so are the files taken from it
    assert default_pki.security.pki == case / "pki"
    assert default_pki.security.certificate_file == case / "pki/own/certs/shopfloor.der"
    assert default_pki.auth.certificate == Path("/run/secrets/user.der")
    assert default_pki.auth.private_key == case / "user.pem"


def test_paths_outside_a_file_stay_relative_to_the_working_directory() -> None:
    text = (HERE / "testcases" / "ok_paths_relative_to_file" / "config.yaml").read_text()
    (entry, _) = parse_config(text, Path("plant.yaml")).entries
    assert entry.security.pki == Path("plant_pki")  # plant.yaml is in the working directory
    assert Security.model_validate({"policy": "None"}).pki == Path("pki")  # e.g. from --pki


def opcua_file(tags: list[dict[str, object]]) -> str:
    """A connectors file of one OPC UA entry with `tags` (JSON is valid YAML)."""
    entry = {
        "type": "opcua",
        "name": "plc",
        "endpoint": "opc.tcp://127.0.0.1:4840",
        "security": "none",
        "tags": tags,
    }
    return json.dumps({"site": "s", "line": "l", "connectors": [entry]})


def test_a_misspelt_tag_field_gets_a_spelling_hint() -> None:
    tag = {"machine": "m", "signal": "s", "node": "ns=1;s=x", "dedband": {"type": "absolute"}}
    with pytest.raises(ConfigError) as caught:
        parse_config(opcua_file([tag]), Path("plant.yaml"))
    (problem,) = str(caught.value).splitlines()
    assert problem.endswith(
        "connectors[0].tags[0].dedband: unknown field; did you mean 'deadband'?"
    )


def test_a_plant_scale_file_holds_little_per_tag() -> None:
    """20,000 tags must fit the connector's memory budget: what a loaded tag keeps beyond its
    own strings is a slotted record (a pydantic model per tag and per deadband cost ~1 kB)."""
    count = 5000
    text = opcua_file(
        [
            {"machine": f"m{i // 100:03d}", "signal": f"v{i % 100:02d}", "node": f"ns=1;s=v{i}"}
            for i in range(count)
        ]
    )
    parse_config(text, Path("plant.yaml"))  # imports and schema caches are not the tags'
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        config = parse_config(text, Path("plant.yaml"))
        gc.collect()
        per_tag = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert len(config.entries[0].tags) == count
    assert per_tag < 400, f"{per_tag:.0f} bytes per tag"
