"""InfluxDB 1.x specifics against the real influxd: errors, gzip, database creation."""

from __future__ import annotations

import pytest

from core.sample import SampleBatch
from historian import HistorianError, Quality, Sample, open_historian
from historian.influx_v1 import InfluxHTTP, InfluxV1Historian
from testbed.influxd import free_port

pytestmark = pytest.mark.influxdb

SAMPLE = Sample("l1", "filler", "speed_bpm", 1.5, Quality.GOOD, 1_000)


def v1(url: str, **options: object) -> InfluxV1Historian:
    store = open_historian(url)
    assert isinstance(store, InfluxV1Historian)
    return InfluxV1Historian(store.base_url, store.database, **options)  # type: ignore[arg-type]


async def test_creates_a_missing_database(influx_db_url: str) -> None:
    store = v1(influx_db_url + "_new")
    http = InfluxHTTP(store.base_url)
    try:
        await store.write_samples([SAMPLE])
        assert [r.value for r in await store.latest()] == [1.5]
    finally:
        await http.query("", f'DROP DATABASE "{store.database}"')
        await http.close()
        await store.close()


async def test_unknown_database_is_an_error_the_data_waits_out(influx_db_url: str) -> None:
    async with v1(influx_db_url + "_absent", create_database=False) as store:
        with pytest.raises(HistorianError, match="database not found") as write_error:
            await store.write_samples([SAMPLE])
        assert write_error.value.retryable is True  # an operator creates it; nothing is dropped
        with pytest.raises(HistorianError, match="database not found"):
            await store.latest()


async def test_malformed_line_surfaces_the_server_message(influx_db_url: str) -> None:
    http = InfluxHTTP(v1(influx_db_url).base_url)
    try:
        with pytest.raises(HistorianError, match="400: unable to parse 'bad line'") as error:
            db = influx_db_url.rsplit("/", 1)[1]
            await http.request("/write", params={"db": db}, data=b"bad line")
        assert error.value.retryable is False
    finally:
        await http.close()


async def test_field_type_conflict_from_another_writer(influx_db_url: str) -> None:
    store = v1(influx_db_url)
    http = InfluxHTTP(store.base_url)
    try:
        line = b"telemetry,line=l1,machine=filler,signal=speed_bpm value=1i 5"
        await http.request("/write", params={"db": store.database}, data=line)
        with pytest.raises(HistorianError, match="field type conflict") as error:
            await store.write_samples([SAMPLE])
        assert error.value.retryable is False
    finally:
        await http.close()
        await store.close()


async def test_bad_influxql_is_an_error(influx_db_url: str) -> None:
    http = InfluxHTTP(v1(influx_db_url).base_url)
    try:
        with pytest.raises(HistorianError, match="error parsing query"):
            await http.query("x", "SELECT FROM WHERE")
    finally:
        await http.close()


async def test_unreachable_server_is_retryable() -> None:
    async with InfluxV1Historian(f"http://127.0.0.1:{free_port()}", "db", timeout=2) as store:
        with pytest.raises(HistorianError, match="unreachable") as error:
            await store.write_samples([SAMPLE])
        assert error.value.retryable is True


async def test_gzip_writes(influx_db_url: str) -> None:
    async with v1(influx_db_url, gzip_writes=True, batch_size=3) as store:
        samples = [Sample("l1", "m", "s", float(i), Quality.GOOD, i) for i in range(10)]
        await store.write_samples(samples)
        assert [p.fields["value"] for p in await store.points("telemetry")] == list(range(10))


async def test_a_batch_written_in_chunks_fails_before_any_chunk_is_sent(
    influx_db_url: str,
) -> None:
    """Chunks are formatted one at a time as they are sent; a record that cannot be written
    in the last chunk still fails the batch before the first chunk went in."""
    async with v1(influx_db_url, batch_size=3) as store:
        samples = [Sample("l1", "m", "s", float(i), Quality.GOOD, i) for i in range(9)]
        samples.append(Sample("l1", "m", "bad\nname", 9.0, Quality.GOOD, 9))
        with pytest.raises(HistorianError, match="cannot be written as InfluxDB line protocol"):
            await store.write_samples(SampleBatch() + samples)
        with pytest.raises(HistorianError, match="cannot be written as InfluxDB line protocol"):
            await store.write_samples(samples)
        assert await store.points("telemetry") == []
        await store.write_samples(SampleBatch() + samples[:9])
        assert [p.fields["value"] for p in await store.points("telemetry")] == list(range(9))


def test_describe_and_repr_show_where_not_who(influx_db_url: str) -> None:
    store = InfluxV1Historian("https://db.plant:8086", "line1", username="u", password="pw!")
    assert store.describe() == "influxdbs://db.plant:8086/line1"
    assert "pw!" not in repr(store)
