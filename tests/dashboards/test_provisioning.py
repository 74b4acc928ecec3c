"""Grafana provisioning: the datasource every dashboard names, alert rules on it, one contact
point and the policy that uses it, every environment variable supplied by compose."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.influxql import DATASOURCE_UID

ROOT = Path(__file__).parents[2]
PROVISIONING = ROOT / "dashboards" / "provisioning"


def _load(relative: str) -> dict[str, Any]:
    return yaml.safe_load((PROVISIONING / relative).read_text(encoding="utf-8"))


def test_datasource_is_influxql_with_settings_from_the_environment() -> None:
    (source,) = _load("datasources/influxdb.yaml")["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "influxdb"
    assert source["url"] == "${INFLUX_URL}"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["jsonData"]["dbName"] == "${INFLUX_DB}"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"


def test_every_provisioning_variable_is_set_for_grafana() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    environment = compose["services"]["grafana"]["environment"]
    for path in PROVISIONING.rglob("*.yaml"):
        values = json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")))  # no comments
        for name in re.findall(r"(?<!\$)\$\{(\w+)\}", values):
            assert name in environment, f"{path.name} reads ${{{name}}}; compose does not set it"


def test_alert_rules_use_the_datasource_and_their_conditions_exist() -> None:
    rules = [r for g in _load("alerting/rules.yaml")["groups"] for r in g["rules"]]
    assert {r["uid"] for r in rules} == {"shopfloor-anomaly-episode", "shopfloor-connector-stalled"}
    for rule in rules:
        refs = {item["refId"] for item in rule["data"]}
        assert rule["condition"] in refs
        for item in rule["data"]:
            assert item["datasourceUid"] in {DATASOURCE_UID, "__expr__"}
            assert item["model"]["refId"] == item["refId"]
            if "expression" in item["model"]:
                assert item["model"]["expression"] in refs
        assert not re.search(r"\$", yaml.safe_dump(rule["labels"])), "labels are interpolated"


def test_one_contact_point_and_the_policy_sends_to_it() -> None:
    points = _load("alerting/contact-points.yaml")["contactPoints"]
    (policy,) = _load("alerting/policies.yaml")["policies"]
    assert [p["name"] for p in points] == [policy["receiver"]]
    (receiver,) = points[0]["receivers"]
    assert receiver["settings"]["addresses"] == "${ALERT_EMAIL}"


@pytest.mark.influxdb
def test_an_empty_token_header_is_accepted_by_influxdb_1x(influxdb_url: str) -> None:
    """With INFLUX_TOKEN empty the datasource sends `Authorization: Token `: InfluxDB 1.x
    without authentication must still answer (docs/full-stack.md promises it works)."""
    netloc = urllib.parse.urlsplit(influxdb_url).netloc
    query = urllib.parse.urlencode({"q": "SHOW DATABASES"})
    request = urllib.request.Request(f"http://{netloc}/query?{query}")
    request.add_header("Authorization", "Token ")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        assert b'"results"' in resp.read()
