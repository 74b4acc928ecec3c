"""Choosing a backend from a URL and the environment; errors name the fix, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from historian import HistorianError, describe, open_historian
from historian.influx_v1 import InfluxV1Historian
from historian.influx_v2 import InfluxV2Historian
from historian.sqlite import SQLiteHistorian

V2_ENV = {"INFLUX_ORG": "plant", "INFLUX_BUCKET": "line1", "INFLUX_TOKEN": "tok-SECRET"}


def test_default_is_sqlite_and_env_overrides() -> None:
    default = open_historian(None, {})
    assert isinstance(default, SQLiteHistorian) and default.describe() == "sqlite:shopfloor.db"
    chosen = open_historian(None, {"SHOPFLOOR_HISTORIAN": "influxdb://h:9/db"})
    assert chosen.describe() == "influxdb://h:9/db"
    assert open_historian("sqlite:/tmp/x.db", {"SHOPFLOOR_HISTORIAN": "bad"}).describe() == (
        "sqlite:/tmp/x.db"
    )


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("influxdb://db.plant:8086/line1", "influxdb://db.plant:8086/line1"),
        ("influxdb://db.plant/line1", "influxdb://db.plant:8086/line1"),
        ("influxdbs://db.plant:443/line1/", "influxdbs://db.plant:443/line1"),
        ("influxdb://[::1]:8087/x", "influxdb://[::1]:8087/x"),
    ],
)
def test_influx_v1_urls(url: str, described: str) -> None:
    store = open_historian(url, {"INFLUX_USERNAME": "u", "INFLUX_PASSWORD": "SECRET"})
    assert isinstance(store, InfluxV1Historian)
    assert store.describe() == described
    assert "SECRET" not in repr(store)


def test_influx_v2_url_and_env() -> None:
    store = open_historian("influxdb2s://cloud.example:443", V2_ENV)
    assert isinstance(store, InfluxV2Historian)
    assert store.base_url == "https://cloud.example:443"
    assert (store.org, store.database) == ("plant", "line1")
    assert "SECRET" not in repr(store) + store.describe()


@pytest.mark.parametrize("missing", ["INFLUX_ORG", "INFLUX_BUCKET", "INFLUX_TOKEN"])
def test_influx_v2_names_the_missing_variable(missing: str) -> None:
    env = {**V2_ENV, missing: ""}
    with pytest.raises(HistorianError, match=f"needs the environment variable {missing}"):
        open_historian("influxdb2://h:8086", env)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:", "needs a file path"),
        ("postgres://h/db", "not understood; use sqlite:PATH"),
        ("influxdb:h/db", "not understood"),
        ("influxdb://h:8086", "needs one database name"),
        ("influxdb://h:8086/a/b", "needs one database name"),
        ("influxdb://h:port/db", "bad host or port"),
        ("influxdb://:8086/db", "no host"),
        ("influxdb://h/db?gzip=1", "takes no"),
        ("influxdb2://h:8086/bucket", "takes no path"),
        ("influxdb://admin:SECRET@h:8086/db", "credentials do not belong in the URL"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(HistorianError, match=message) as error:
        open_historian(url, V2_ENV)
    assert "SECRET" not in str(error.value)
    assert "\n" not in str(error.value)


def test_password_without_username() -> None:
    with pytest.raises(HistorianError, match="INFLUX_USERNAME is not"):
        open_historian("influxdb://h/db", {"INFLUX_PASSWORD": "SECRET"})


def test_describe_url_drops_credentials() -> None:
    assert describe("influxdb://u:SECRET@h:1/db", {}) == "influxdb://h:1/db"
    assert describe("influxdb://h:1/db?u=x&password=SECRET#SECRET", {}) == (
        "influxdb://h:1/db?REDACTED#REDACTED"
    )
    assert describe("influxdb:u:SECRET@h/db", {}) == "influxdb:h/db"


@pytest.mark.parametrize(
    "url",
    [
        "influxdb://h:8086/db?password=SECRET",
        "influxdb2://h:8086?token=SECRET",
        "influxdb://h:8086/db#SECRET",
        "influxdb:admin:SECRET@h/db",
        "influx://admin:SECRET@h/db?p=SECRET",
    ],
)
def test_a_password_typed_into_the_url_is_never_echoed(url: str) -> None:
    with pytest.raises(HistorianError) as error:
        open_historian(url, V2_ENV)
    assert "SECRET" not in str(error.value)
    assert describe(None, {}) == "sqlite:shopfloor.db"


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok-FROM-FILE\n")
    env = {**V2_ENV, "INFLUX_TOKEN": "", "INFLUX_TOKEN_FILE": str(token)}
    store = open_historian("influxdb2://h:8086", env)
    assert store._token == "tok-FROM-FILE"  # type: ignore[attr-defined]
    assert "FROM-FILE" not in repr(store) + store.describe()


def test_an_unreadable_secret_file_is_named_not_shown(tmp_path: Path) -> None:
    env = {**V2_ENV, "INFLUX_TOKEN_FILE": str(tmp_path / "missing")}
    with pytest.raises(HistorianError, match=r"INFLUX_TOKEN_FILE=.*missing: cannot read it"):
        open_historian("influxdb2://h:8086", env)
