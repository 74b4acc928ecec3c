"""Publish to a real Mosquitto and ingest back: Sparkplug B checked by an independent host
(pysparkplug), the JSON layout read with mosquitto_sub, and every sample in the historian."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.sample import Point, Quality, Sample
from core.storage import HistorianError
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian.sqlite import SQLiteHistorian
from testbed.influxd import free_port
from testbed.mosquitto import Mosquitto
from tests.e2e.test_line import running
from tests.eventually import eventually
from tests.uns.conftest import sparkplug_host
from uns import sparkplug
from uns.broker import open_broker
from uns.ingest import MqttIngest
from uns.publisher import MqttPublisher

T0 = 1_796_000_000_000_000_000
SIGNALS = ("temperature_c", "current_a", "speed_rpm")


def batch(i: int, machine: str = "filler", quality: Quality = Quality.GOOD) -> list[Sample]:
    ts = T0 + i * 10_000_000  # 10 ms apart: Sparkplug timestamps are milliseconds
    value = math.nan if quality == Quality.BAD else float(i)
    return [Sample("line1", machine, s, value, quality, ts, "plant") for s in SIGNALS]


def ms_key(s: Sample) -> tuple[str, str, str, str, int]:
    return (s.site, s.line, s.machine, s.signal, s.source_ts // 1_000_000)


async def test_samples_reach_the_historian_and_sparkplug_is_valid(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    broker = open_broker(f"{mosquitto.url}?group=plant&node=edge1")
    publisher = MqttPublisher(broker)
    edge = HistorianWriter(  # one put per write: one DDATA per machine and put
        publisher, spool=Spool(tmp_path / "edge"), flush_interval_s=0.01, batch_size=6
    )
    store = SQLiteHistorian(str(tmp_path / "h.db"))
    writer = HistorianWriter(store, spool=Spool(tmp_path / "ingest"), flush_interval_s=0.05)
    worker = MqttIngest(broker, writer.put_points, client_id="w1")
    sent: list[Sample] = []
    with sparkplug_host(mosquitto, tmp_path) as report:
        async with store, running(edge.run(), Agent([worker], writer).run()):
            await eventually(lambda: worker.stats.connected, "ingest connected")
            for i in range(300):  # 600 DDATA: seq wraps past 255 twice
                sent += batch(i) + batch(i, "capper")
                await edge.put(batch(i) + batch(i, "capper"))
                await asyncio.sleep(0.002)
            await edge.put(batch(300, "capper", Quality.BAD))  # its PLC went down
            sent += batch(300, "capper", Quality.BAD)
            await edge.put_points([Point("events", {"machine": "filler"}, {"text": "x"}, T0)])
            await eventually(lambda: writer.stats.samples_written >= len(sent), "all ingested", 20)
            await eventually(lambda: writer.stats.points_written >= 1, "the event ingested")
            await publisher.close()
            last = max(s.source_ts for s in sent)
            for _ in range(100):  # points and deaths travel their own topics: wait for them
                stored = await store.points("telemetry")
                deaths = [p for p in stored if p.ts > last]  # marked at the time received
                events = await store.points("events")
                if events and len(deaths) == 3 * len(SIGNALS):
                    break
                await asyncio.sleep(0.1)
    data = [p for p in stored if p.ts <= last]
    assert {
        (p.tags["site"], p.tags["line"], p.tags["machine"], p.tags["signal"], p.ts // 1_000_000)
        for p in data
    } == {ms_key(s) for s in sent}
    assert len(data) == len(sent)
    bad = [p for p in data if p.fields["quality"] == Quality.BAD]
    assert len(bad) == len(SIGNALS)
    # The capper's DDEATH, then the clean stop's NDEATH: every signal of the node, bad.
    assert all(p.fields == {"quality": Quality.BAD} for p in deaths)
    assert Counter(p.tags["machine"] for p in deaths) == {"capper": 6, "filler": 3}
    assert [e.fields["text"] for e in events] == ["x"]
    assert report["violations"] == []
    assert report["kinds"]["NBIRTH"] == 1 and report["kinds"]["DBIRTH"] == 2
    assert report["kinds"]["DDATA"] >= 601 and report["wraps"]["plant/edge1"] >= 2
    assert report["ddeaths"] == {"capper": 1}
    assert report["kinds"]["NDEATH"] == 1  # the clean stop's, with the session's bdSeq
    assert len(report["samples"]) == len(sent)


async def test_a_rebirth_request_gets_births_again_and_json_is_retained(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    publisher = MqttPublisher(open_broker(f"{mosquitto.url}?group=plant&node=edge2&area=fill"))
    with sparkplug_host(mosquitto, tmp_path) as report:
        await publisher.write_samples(batch(1))
        await publisher.write_samples(batch(2))
        ncmd = sparkplug.topic("plant", "NCMD", "edge2")
        await asyncio.to_thread(
            subprocess.run,
            ["mosquitto_pub", "-p", str(mosquitto.port), "-t", ncmd, "-q", "1", "-s"],
            input=sparkplug.rebirth_request(),
            check=True,
        )
        await asyncio.sleep(0.5)
        await publisher.write_samples(batch(3))
        await publisher.close()
    assert report["violations"] == []
    assert report["kinds"]["NBIRTH"] == 2 and report["kinds"]["DBIRTH"] == 2
    assert report["bd_seq"] == {"plant/edge2": 0}  # a rebirth keeps the session's bdSeq
    retained = await asyncio.to_thread(
        subprocess.run,
        ["mosquitto_sub", "-p", str(mosquitto.port), "-t", "uns/#", "-v", "-C", "3", "-W", "5"],
        capture_output=True,
        text=True,
        check=True,
    )
    latest = dict(line.split(" ", 1) for line in retained.stdout.splitlines())
    payload = json.loads(latest["uns/plant/fill/line1/filler/temperature_c"])
    assert payload["value"] == 3.0 and payload["unit"] == "°C" and payload["quality"] == "good"


async def test_a_publish_the_broker_refuses_is_a_retryable_error(tmp_path: Path) -> None:
    """An ACL that lets this client read but not write: the broker answers PUBACK "Not
    authorized" and drops the message; that is no delivery, the batch must stay spooled."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\ntopic write spBv1.0/plant/NDEATH/#\n")  # its will: allowed
    with Mosquitto(extra_config=f"acl_file {acl}\n") as broker:
        publisher = MqttPublisher(open_broker(f"{broker.url}?group=plant&node=refused"))
        with pytest.raises(HistorianError, match=r"Not authorized.*ACL") as caught:
            await publisher.write_samples(batch(0))
        await publisher.close()
    assert caught.value.retryable


async def test_a_broker_that_is_down_is_a_retryable_error() -> None:
    publisher = MqttPublisher(open_broker(f"mqtt://127.0.0.1:{free_port()}"), timeout_s=2)
    with pytest.raises(HistorianError) as caught:
        await publisher.write_samples(batch(1))
    assert caught.value.retryable
    assert "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://user:pw@host:1883", "credentials do not belong in the URL"),
        ("mqtt://host:1883?colour=red", "unknown option 'colour'"),
        ("mqtt://host:1883?format=xml", "format must be"),
        ("http://host", "not understood"),
    ],
)
def test_bad_broker_urls_say_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(HistorianError, match=message) as caught:
        open_broker(url, {})
    assert "pw" not in str(caught.value)


async def test_a_worker_started_after_the_births_asks_for_a_rebirth(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Its session began after the edge node's births: it holds the data, sends NCMD Node
    Control/Rebirth, and decodes once the births come."""
    broker = open_broker(f"{mosquitto.url}?group=plant&node=edge3")
    publisher = MqttPublisher(broker)
    await publisher.write_samples(batch(0))  # NBIRTH, DBIRTH, DDATA before any worker
    store = SQLiteHistorian(str(tmp_path / "h.db"))
    writer = HistorianWriter(store, spool=Spool(tmp_path / "ingest"), flush_interval_s=0.05)
    late = MqttIngest(broker, writer.put_points, client_id="w-late")
    sent = [s for i in range(1, 6) for s in batch(i)]
    async with store, running(Agent([late], writer).run()):
        await eventually(lambda: late.stats.connected, "its session made")
        await publisher.write_samples(sent)  # DDATA only: the node was born already
        await eventually(lambda: writer.stats.samples_written >= len(sent), "decoded", 20)
        stored = await store.points("telemetry")
    await publisher.close()
    assert {ms_key(s) for s in sent} == {stored_key(p) for p in stored}
    assert publisher.rebirths == 1  # asked by the worker, answered in the same session
    assert late.rejected == 0 and publisher.edge.bd_seq == 0


async def test_a_worker_away_while_a_node_was_born_and_gone_decodes_what_waited_for_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Births and data queued in its session while it was down, the edge node stopped before it
    came back (no rebirth possible): the births come first, from its session, and every sample
    is stored."""
    broker = open_broker(f"{mosquitto.url}?group=plant&node=edge4")
    first = MqttIngest(broker, _ignore, client_id="w-away")
    async with running(first.run(_ignore)):
        await eventually(lambda: first.stats.connected, "its session made")
    publisher = MqttPublisher(broker)
    sent = [s for i in range(5) for s in batch(i)]
    await publisher.write_samples(sent)  # NBIRTH, DBIRTH, DDATA while the worker is away
    await publisher.close()  # NDEATH: nobody to ask for a rebirth
    store = SQLiteHistorian(str(tmp_path / "h.db"))
    writer = HistorianWriter(store, spool=Spool(tmp_path / "ingest"), flush_interval_s=0.05)
    again = MqttIngest(broker, writer.put_points, client_id="w-away")
    async with store, running(Agent([again], writer).run()):
        # what was sent, then the NDEATH that waited behind it: every signal marked bad
        await eventually(lambda: writer.stats.samples_written >= len(sent) + 3, "decoded", 20)
        stored = await store.points("telemetry")
    last = max(s.source_ts for s in sent)
    assert {ms_key(s) for s in sent} == {stored_key(p) for p in stored if p.ts <= last}
    deaths = [p for p in stored if p.ts > last]
    assert sorted(p.tags["signal"] for p in deaths) == sorted(SIGNALS)
    assert all(p.fields == {"quality": Quality.BAD} for p in deaths)
    assert publisher.rebirths == 0 and again.rejected == 0


def stored_key(p: Point) -> tuple[str, str, str, str, int]:
    return (p.tags["site"], p.tags["line"], p.tags["machine"], p.tags["signal"], p.ts // 1_000_000)


async def _ignore(_: object) -> None:
    """A first session only makes the worker's session on the broker; it stores nothing."""


def test_credentials_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    broker = open_broker(
        "mqtt://h:1883?node=a b", {"MQTT_USERNAME": "edge", "MQTT_PASSWORD_FILE": str(secret)}
    )
    assert (broker.username, broker.password, broker.node) == ("edge", "s3cret", "a_b")
    assert "s3cret" not in broker.describe() and broker.port == 1883
    with pytest.raises(HistorianError, match="MQTT_USERNAME is not"):
        open_broker("mqtt://h", {"MQTT_PASSWORD": "x"})
    with pytest.raises(HistorianError, match="MQTT_CA_FILE=/nonexistent: no such file"):
        open_broker("mqtts://h", {"MQTT_CA_FILE": "/nonexistent"})


LOOPBACK = ip_address("127.0.0.1")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test broker")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "broker.pem", folder / "broker.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_and_a_password_from_a_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    passwd = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run,
        ["mosquitto_passwd", "-b", "-c", str(passwd), "edge", "s3cret"],
        check=True,
    )
    passwd.chmod(0o644)
    extra = f"cafile {cert}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous false\n"
    extra += f"password_file {passwd}\n"
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    env = {"MQTT_USERNAME": "edge", "MQTT_PASSWORD_FILE": str(secret), "MQTT_CA_FILE": str(cert)}
    with Mosquitto(extra_config=extra) as broker:
        url = broker.url.replace("mqtt://", "mqtts://")
        publisher = MqttPublisher(open_broker(f"{url}?node=tls", env))
        await publisher.write_samples(batch(1))
        await publisher.close()
        wrong = MqttPublisher(
            open_broker(url, {**env, "MQTT_PASSWORD_FILE": "", "MQTT_PASSWORD": "no"})
        )
        with pytest.raises(HistorianError) as caught:
            await wrong.write_samples(batch(1))
    assert caught.value.retryable  # a wrong password waits in the spool until it is fixed
    assert publisher.sessions == 1
