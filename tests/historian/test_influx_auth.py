"""Basic auth against a real influxd with authentication on; credentials come from the env."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from historian import HistorianError, Quality, Sample, open_historian
from historian.influx_v1 import InfluxHTTP
from historian.influxql import quote_literal
from testbed.influxd import INSTALL_HINT, Influxd

pytestmark = pytest.mark.influxdb

PASSWORD = "pa55'word"


@pytest.fixture(scope="module")
def secured_influxd() -> Iterator[str]:
    """A second throwaway influxd with auth-enabled = true."""
    if shutil.which("influxd") is None:
        pytest.fail(f"this test starts its own InfluxDB with auth: {INSTALL_HINT}", pytrace=False)
    with Influxd(auth_enabled=True) as server:
        yield server.url


async def test_basic_auth_from_env_and_secret_hygiene(secured_influxd: str) -> None:
    admin = InfluxHTTP(secured_influxd)
    try:
        create = f'CREATE USER "plant" WITH PASSWORD {quote_literal(PASSWORD)} WITH ALL PRIVILEGES'
        await admin.query("", create)
    finally:
        await admin.close()
    url = secured_influxd.replace("http://", "influxdb://") + "/secured"
    sample = Sample("l1", "m", "s", 2.5, Quality.GOOD, 10)

    good_env = {"INFLUX_USERNAME": "plant", "INFLUX_PASSWORD": PASSWORD}
    async with open_historian(url, good_env) as store:
        await store.write_samples([sample])  # also creates the database
        assert [r.value for r in await store.latest()] == [2.5]
        assert PASSWORD not in repr(store) and PASSWORD not in store.describe()

    bad_env = {"INFLUX_USERNAME": "plant", "INFLUX_PASSWORD": "wrong-" + PASSWORD}
    async with open_historian(url, bad_env) as store:
        with pytest.raises(HistorianError, match="401") as error:
            await store.latest()
    assert error.value.retryable is True  # no record is at fault: the data waits for the fix
    assert PASSWORD not in str(error.value)

    async with open_historian(url, {}) as store:
        with pytest.raises(HistorianError, match="401"):
            await store.write_samples([sample])
