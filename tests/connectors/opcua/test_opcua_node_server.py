"""The OPC UA connector and commissioning commands against node-opcua, a server we did not write.

It behaves like a locked-down PLC (tests/second_stack): a client it does not know is refused
until its certificate is moved from rejected/ to trusted/, a login is required, and constant
variables keep the source timestamp of their last change.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.opcua import Config, OpcUaInput, build
from connectors.opcua.pki import Pki, create_certificate
from connectors.opcua.session import ChannelRefused, close_session, open_session
from core.sample import Quality, Sample
from shopfloor import commissioning
from tests.connectors.opcua.opcua_testplc import Collector
from tests.second_stack import (
    NODE_PASSWORD,
    NODE_USER,
    Running,
    libmodbus_binary,
    libmodbus_server,
    node_opcua_server,
)

pytestmark = pytest.mark.timeout(90)
PASSWORD_ENV = "SHOPFLOOR_TEST_NODE_PASSWORD"
CONSTANT = ["mode", "running", "bottles", "setpoint"]
SIGNALS = ["temperature", *CONSTANT]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with node_opcua_server(tmp_path_factory.mktemp("node-opcua")) as server:
        yield server


@pytest.fixture(scope="module")
def libmodbus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with libmodbus_server(libmodbus_binary(tmp_path_factory.mktemp("libmodbus"))) as server:
        yield server


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, NODE_PASSWORD)


def client_pki(root: Path) -> Pki:
    pki = Pki(root)
    create_certificate(
        pki, application_uri=f"urn:test:{root.name}", hostnames=[socket.gethostname(), "localhost"]
    )
    return pki


def entry(node: Running, pki: Pki, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "opcua",
        "name": "node",
        "endpoint": node.endpoint,
        "security": {
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "pki": str(pki.root),
            "trust_on_first_use": True,
        },
        "auth": {"username": NODE_USER, "password_env": PASSWORD_ENV},
        "publishing_interval_ms": 200,
        "sampling_interval_ms": 100,
        "timeout_s": 3,
        "reconnect": {"min_s": 0.1, "max_s": 0.5},
        "tags": [{"machine": "oven", "signal": s, "node": f"ns=1;s=oven.{s}"} for s in SIGNALS],
        **overrides,
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopfloor")
    commissioning.register(parser.add_subparsers(dest="command", required=True))
    return parser


async def cli(*argv: str) -> int:
    args = parser().parse_args(argv)
    async with asyncio.timeout(60):
        return await args.handler(args)


def checked(out: str, signal: str) -> list[str]:
    """VALUE and UNIT of a signal's row in `check` output (a tag read fine)."""
    for line in out.splitlines():
        cells = line.split()
        if cells[1:2] == [signal] and cells[3:4] == ["ok"]:
            return cells[4:]
    raise AssertionError(f"no ok row for {signal} in:\n{out}")


def latest_by_time(samples: list[Sample]) -> dict[str, Sample]:
    """What a historian shows as the current value: the newest point by timestamp."""
    latest: dict[str, Sample] = {}
    for sample in samples:
        if sample.signal not in latest or sample.source_ts >= latest[sample.signal].source_ts:
            latest[sample.signal] = sample
    return latest


async def trusted_pki(node: Running, root: Path) -> Pki:
    """A client pki the server trusts: refused once, then moved to trusted/ on the server."""
    pki = client_pki(root)
    source = build(Config.model_validate(entry(node, pki)), site="s", line="l")
    collector = Collector()
    task = asyncio.create_task(source.run(collector.emit))
    try:
        await eventually(lambda: source.stats.errors >= 1)
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert node.trust_rejected_clients()
    await until_trusted(node, Config.model_validate(entry(node, pki)))
    return pki


async def until_trusted(node: Running, config: Config) -> None:
    """Until a session opens: node-opcua notices a certificate moved to trusted/ in seconds
    (a refusal meanwhile files it in rejected/ again: moved again)."""
    async with asyncio.timeout(60):
        while True:
            try:
                client, _ = await open_session(
                    config.endpoint, config.security, config.auth, timeout_s=5
                )
            except ChannelRefused:
                await asyncio.sleep(2)
                node.trust_rejected_clients()
                continue
            await close_session(client, 5)
            return


async def eventually(predicate: Any, within_s: float = 20.0) -> None:
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 - polling state no event announces
            await asyncio.sleep(0.05)


async def test_check_of_a_plc_that_does_not_trust_us_yet_then_does(
    node: Running,
    libmodbus: Running,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pki = client_pki(tmp_path / "pki")
    config = {
        "connectors": [
            entry(node, pki),
            {
                "type": "modbus",
                "name": "meter",
                "url": libmodbus.url,
                "devices": [
                    {
                        "unit": 1,
                        "machine": "meter",
                        "tags": [
                            {"signal": "count", "table": "holding", "address": 0, "type": "uint16"},
                            {"signal": "big", "table": "holding", "address": 3, "type": "uint32"},
                        ],
                    }
                ],
            },
        ]
    }
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")

    assert await cli("check", "--config", str(path)) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "AssertionError" not in out + err
    refused = "cannot connect: the server refused this connector's certificate"
    assert out.count(refused) == len(SIGNALS)
    assert "unit 1 holding 0  ok      1234.0" in out  # the Modbus results are all there
    assert "unit 1 holding 3  ok      4000000001.0" in out  # as stored, not 4e+09

    assert len(node.trust_rejected_clients()) == 1  # the refused client was filed there
    await until_trusted(node, Config.model_validate(config["connectors"][0]))
    assert await cli("check", "--config", str(path)) == 0
    out = capsys.readouterr().out
    assert checked(out, "bottles") == ["4000000001.0"]  # exactly as stored, not 4e+09
    assert checked(out, "setpoint") == ["12345.678"]  # not 12345.7
    assert checked(out, "temperature")[1] == "°C"  # the server's EngineeringUnits


async def test_connector_refused_by_the_plc_logs_one_line_and_waits_minutes(
    node: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = client_pki(tmp_path / "pki")
    source = build(Config.model_validate(entry(node, pki)), site="s", line="l")
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(source.run(Collector().emit))
        try:
            await eventually(lambda: source.stats.errors >= 1)
            await asyncio.sleep(3)  # reconnect.max_s is 0.5: many retries if it did not wait
        finally:
            task.cancel()
            await asyncio.wait([task])
    assert source.stats.errors == 1
    problems = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "crypto" not in r.name
    ]
    (line,) = [r.getMessage() for r in problems]
    assert "the server refused this connector's certificate" in line
    assert "not retrying for 300 s" in line
    assert not any(r.exc_info for r in caplog.records)


async def test_wrong_password_is_tried_once_then_not_for_minutes(
    node: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pki = await trusted_pki(node, tmp_path / "pki")
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    caplog.clear()
    source = build(Config.model_validate(entry(node, pki)), site="s", line="l")
    with caplog.at_level(logging.WARNING):
        task = asyncio.create_task(source.run(Collector().emit))
        try:
            await eventually(lambda: source.stats.errors >= 1)
            await asyncio.sleep(3)
        finally:
            task.cancel()
            await asyncio.wait([task])
    assert source.stats.errors == 1
    (line,) = [r.getMessage() for r in caplog.records if "crypto" not in r.name]
    assert f"login refused for user '{NODE_USER}'" in line and "not retrying for 300 s" in line


async def test_constant_tags_are_good_again_after_a_frozen_server_and_kept_alive(
    node: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = await trusted_pki(node, tmp_path / "pki")
    caplog.set_level(logging.INFO, "connectors")
    config = entry(node, pki, max_age_s=1.0)
    config["tags"][-1]["max_age_s"] = 0  # setpoint: no keep-alive
    source: OpcUaInput = build(Config.model_validate(config), site="s", line="l")
    collector = Collector()
    task = asyncio.create_task(source.run(collector.emit))
    try:
        await collector.wait_for(lambda: collector.good_since(0, SIGNALS), within_s=20)
        kept_from = len(collector.samples)
        await asyncio.sleep(3.5)
        kept = collector.samples[kept_from:]
        node.freeze()
        frozen_at = time.monotonic()
        try:
            await eventually(lambda: not source.stats.connected, within_s=15)
            noticed_s = time.monotonic() - frozen_at
            await asyncio.sleep(1)
        finally:
            node.thaw()
        await eventually(lambda: source.stats.connected, within_s=20)
        await asyncio.sleep(1)
    finally:
        task.cancel()
        await asyncio.wait([task])
    # 2 publishing intervals + 3 s by default, plus one watch step and scheduling slack
    assert noticed_s < source.stale_after_s() + 2.0, noticed_s
    assert source.stale_after_s() == pytest.approx(3.4)
    latest = latest_by_time(collector.samples)
    for signal in SIGNALS:
        assert latest[signal].quality is Quality.GOOD, (signal, latest[signal])
    mode_points = {s.source_ts for s in kept if s.signal == "mode"}
    assert len(mode_points) >= 3  # re-recorded every max_age_s although it never changes
    assert not [s for s in kept if s.signal == "setpoint"]  # its own max_age_s: 0
    assert "s (server frozen or network stalled)" in caplog.text
    negotiated = "(SecurityPolicy Basic256Sha256, mode SignAndEncrypt, user 'operator')"
    assert caplog.text.count(f"node: connected to {node.endpoint} {negotiated}") == 2


async def test_browse_emits_units_from_the_server_and_keeps_an_existing_file(
    node: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = await trusted_pki(node, tmp_path / "pki")
    target = tmp_path / "plc.yaml"
    login = [
        "--policy",
        "Basic256Sha256",
        "--mode",
        "SignAndEncrypt",
        "--pki",
        str(pki.root),
        "--username",
        NODE_USER,
        "--password-env",
        PASSWORD_ENV,
    ]
    assert await cli("browse", node.endpoint, "--emit-config", str(target), *login) == 0
    emitted = yaml.safe_load(target.read_text(encoding="utf-8"))
    signals = {t["signal"] for t in emitted["connectors"][0]["tags"]}
    assert "temperature_c" in signals and "mode" in signals
    target.write_text("# edited by hand\n", encoding="utf-8")
    with pytest.raises(commissioning.CommandError, match="exists; pass --force"):
        await cli("browse", node.endpoint, "--emit-config", str(target), *login)
    assert target.read_text(encoding="utf-8") == "# edited by hand\n"
    assert await cli("browse", node.endpoint, "--emit-config", str(target), "--force", *login) == 0
    capsys.readouterr()
