"""MQTT logins: a password over plain mqtt:// is warned about, and a login the broker refuses
(a real Mosquitto with a password file) is not tried again before `auth_retry_s`, by the
publisher and by the ingest worker alike, as OPC UA does with a refused certificate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from core.reconnect import Reconnect
from core.sample import Point, Quality, Sample
from core.storage import HistorianError
from testbed.mosquitto import Mosquitto
from uns.broker import open_broker
from uns.ingest import MqttIngest
from uns.publisher import MqttPublisher

WRONG = {"MQTT_USERNAME": "edge", "MQTT_PASSWORD": "wrong"}


def test_a_password_over_plain_mqtt_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="uns.broker")
    open_broker("mqtt://broker.example:1883", WRONG)
    assert "MQTT_PASSWORD goes over the network in plain text" in caplog.text
    assert "mqtts://" in caplog.text and "wrong" not in caplog.text
    caplog.clear()
    open_broker("mqtts://broker.example", WRONG)
    open_broker("mqtt://broker.example")  # no password: nothing to warn about
    assert not caplog.records


@contextlib.contextmanager
def guarded_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that lets in only `edge` with the password `s3cret`."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "edge", "s3cret"], check=True)
    passwd.chmod(0o644)
    with Mosquitto(extra_config=f"allow_anonymous false\npassword_file {passwd}\n") as broker:
        yield broker


def sample() -> list[Sample]:
    return [Sample("line1", "filler", "speed", 1.0, Quality.GOOD, time.time_ns(), "plant")]


async def test_the_publisher_does_not_log_in_again_before_auth_retry_s(tmp_path: Path) -> None:
    with guarded_broker(tmp_path) as broker:
        publisher = MqttPublisher(open_broker(broker.url, WRONG), auth_retry_s=1.0)
        with pytest.raises(HistorianError) as first:
            await publisher.write_samples(sample())
        assert first.value.retryable  # the data waits in the spool until the login is fixed
        began = time.monotonic()
        with pytest.raises(HistorianError, match="refused the login; not trying again for"):
            await publisher.write_samples(sample())
        assert time.monotonic() - began < 0.1  # no connect was tried
        await asyncio.sleep(1.1)
        with pytest.raises(HistorianError) as later:  # after the wait: asked again
            await publisher.write_samples(sample())
        assert "not trying again" not in str(later.value)
        await publisher.close()


async def test_the_ingest_worker_waits_auth_retry_s_after_a_refused_login(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def put_points(points: Sequence[Point]) -> None:
        pass

    with guarded_broker(tmp_path) as broker:
        worker = MqttIngest(
            open_broker(broker.url, WRONG),
            put_points,
            client_id="w1",
            reconnect=Reconnect(min_s=0.05, max_s=0.1),  # auth_retry_s: the default 300 s
        )
        task = asyncio.create_task(worker.run(lambda samples: asyncio.sleep(0)))
        try:
            await asyncio.sleep(2.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert worker.stats.errors == 1 and worker.stats.reconnects == 0
    assert "refused the login" in caplog.text and "300 s" in caplog.text
