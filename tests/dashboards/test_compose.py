"""compose.yaml: valid against the Compose Specification, everything it builds or mounts is in
the repo, every variable it reads is documented in .env.example, images pinned."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dashboards.build import DASHBOARDS
from tests.test_layout import ALLOWED

ROOT = Path(__file__).parents[2]
# what the image needs to run `shopfloor`: the CLI and every package it wires
PRODUCT_PACKAGES = ALLOWED["shopfloor"] | {"shopfloor"}
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text(encoding="utf-8"))
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value for key, value in pairs}


def test_compose_validates_against_the_compose_specification() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    errors = [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(COMPOSE)]
    assert errors == []


def test_the_schema_check_catches_a_mistake() -> None:
    broken = {"services": {"x": {"image": "a:1", "depends_on": {"y": {"condition": "started"}}}}}
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))


def test_builds_exist_and_copy_every_product_package() -> None:
    builds = {s["build"] for s in SERVICES.values() if "build" in s}
    assert builds == {"."}
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    copied = {
        p for s in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE) for p in s.split()
    }
    for path in copied:
        assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repo"
    # the `shopfloor` command needs every product package, and only those
    assert copied - {"pyproject.toml"} == PRODUCT_PACKAGES


def _bind_mounts() -> list[tuple[str, str, str]]:
    mounts = []
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts.append((name, source, target))
    return mounts


def test_every_mounted_path_is_in_the_repo() -> None:
    mounts = _bind_mounts()
    assert mounts
    for service, source, _ in mounts:
        assert (ROOT / source).exists(), f"{service} mounts {source}, which is not in the repo"


def test_named_volumes_keep_the_data() -> None:
    declared = set(COMPOSE["volumes"])
    used = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if v[0] != "."}
    assert used == declared
    assert {"influxdb-data", "grafana-data", "spool", "models"} <= declared


def test_every_variable_is_documented_in_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE_TEXT)) | {
        s["environment"] for s in COMPOSE.get("secrets", {}).values() if "environment" in s
    }
    documented = _env_example()
    assert used - documented.keys() == set(), "add these to .env.example"
    assert documented.keys() - used == set(), "documented in .env.example but not used"


def test_no_secret_in_compose_itself() -> None:
    for service in SERVICES.values():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if re.search(r"TOKEN|PASSWORD", key) and not key.endswith("_FILE"):
                assert str(value).startswith("${"), f"{key} must come from .env"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and tag != "latest" and re.search(r"\d+\.\d+", tag), image


def test_start_order_has_healthchecks_behind_it() -> None:
    for name, service in SERVICES.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency
            if how["condition"] == "service_completed_successfully":
                assert SERVICES[dependency].get("restart") == "no", dependency
    healthchecked = {n for n, s in SERVICES.items() if "healthcheck" in s}
    assert {"influxdb", "grafana", "sim", "connectors"} <= healthchecked


def test_influxdb_health_is_probed_on_the_real_port() -> None:
    """Not the setup server of the first start: `influx ping` with the served port as host
    (it GETs /health there); a bare `influx ping` follows the CLI config setup wrote."""
    influxdb = SERVICES["influxdb"]
    (port,) = [p.rpartition(":")[2] for p in influxdb["ports"]]
    assert influxdb["healthcheck"]["test"] == [
        "CMD", "influx", "ping", "--host", f"http://127.0.0.1:{port}"
    ]  # fmt: skip


def test_connectors_health_port_is_the_one_checked() -> None:
    connectors = SERVICES["connectors"]
    port = connectors["command"][connectors["command"].index("--health-port") + 1]
    assert f"127.0.0.1:{port}/health" in " ".join(connectors["healthcheck"]["test"])


def test_grafana_loads_the_provisioning_with_anonymous_access_off() -> None:
    grafana = SERVICES["grafana"]
    mounts = {source: target for service, source, target in _bind_mounts() if service == "grafana"}
    assert mounts["./dashboards/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/shopfloor.yaml").read_text(encoding="utf-8")
    )
    assert mounts["./dashboards/json"] == provider["providers"][0]["options"]["path"]
    environment = grafana["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    home = environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == mounts["./dashboards/json"]
    assert Path(home).name == "line-overview.json" and Path(home).name in DASHBOARDS


def test_compose_connectors_file_is_what_sim_config_prints() -> None:
    """The connectors service reads the sim service's tags by its compose hostname."""
    shipped = ROOT / "config" / "compose-line.yaml"
    (mounted,) = [s for n, s, _ in _bind_mounts() if n == "connectors"]
    assert (ROOT / mounted).resolve() == shipped.resolve()
    printed = subprocess.run(
        [str(ROOT / ".venv/bin/shopfloor"), "sim-config", "--host", "sim"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert shipped.read_text(encoding="utf-8") == printed, (
        "config/compose-line.yaml is stale: "
        "`bin/shopfloor sim-config --host sim > config/compose-line.yaml`"
    )
