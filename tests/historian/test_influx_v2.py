"""The v2 backend's side of the wire, seen by the compatibility layer in front of influxd."""

from __future__ import annotations

from typing import Any

import pytest

from historian import HistorianError, Quality, Sample
from historian.influx_v2 import InfluxV2Historian

pytestmark = pytest.mark.influxdb

SAMPLES = [Sample("l1", "m", "s", float(i), Quality.GOOD, i) for i in range(7)]


def bucket_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_writes_ns_line_protocol_to_bucket_and_org(
    v2_compat: Any, influx_db_url: str
) -> None:
    bucket = bucket_of(influx_db_url)
    async with InfluxV2Historian(
        v2_compat.url,
        org="plant",
        bucket=bucket,
        token=v2_compat.token,
        batch_size=3,
        gzip_writes=True,
    ) as store:
        await store.write_samples(SAMPLES)
        assert len(await store.points("telemetry")) == len(SAMPLES)
    mine = [w for w in v2_compat.writes if w["bucket"] == bucket]
    assert len(mine) == 3  # 7 samples in batches of at most 3
    assert {(w["org"], w["precision"]) for w in mine} == {("plant", "ns")}


async def test_wrong_token_keeps_the_data_and_is_never_shown(
    v2_compat: Any, influx_db_url: str
) -> None:
    token = "wrong-" + v2_compat.token
    bucket = bucket_of(influx_db_url)
    async with InfluxV2Historian(v2_compat.url, org="o", bucket=bucket, token=token) as store:
        with pytest.raises(HistorianError, match="401") as error:
            await store.write_samples(SAMPLES)
        assert error.value.retryable is True  # every record would fail alike: kept for the fix
        with pytest.raises(HistorianError, match="401"):
            await store.latest()
        for text in (str(error.value), repr(store), store.describe()):
            assert token not in text
    assert store.describe() == f"influxdb2://{v2_compat.url[7:]} (org o, bucket {bucket})"
