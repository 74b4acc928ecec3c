"""Secured OPC UA sessions against the simulator's secured server over real sockets.

Every policy and mode with a certificate and a user login; the trust decision on the server's
certificate; wrong or missing credentials; the connector's one-line reasons for each.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from connectors.opcua import Config, OpcUaInput, build
from connectors.opcua.check import check
from connectors.opcua.pki import Pki
from connectors.opcua.security import IMPLICIT_NONE_WARNING, Auth, Security
from connectors.opcua.session import explain, is_refusal, open_session
from core.sample import Quality
from tests.connectors.opcua.opcua_testplc import Collector
from tests.connectors.opcua.secure_sim import (
    PASSWORD,
    PASSWORD_ENV,
    USER,
    SecureSim,
    make_client_pki,
    start_secure_sim,
)

TIMEOUT_S = 5.0
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]
POLICIES = ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
NODE = "ns=2;s=line1.pasteurizer.product_temp_c"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureSim]:
    env = await start_secure_sim(tmp_path_factory.mktemp("secure"))
    for _ in range(30):
        env.sim.step(1.0)
    await env.server.publish(env.sim.values(), datetime.now(UTC))
    try:
        yield env
    finally:
        await env.server.stop()


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return PASSWORD


def security(pki: Pki, policy: str = "Basic256Sha256", mode: str = "SignAndEncrypt", **kw: Any):
    return Security.model_validate({"policy": policy, "mode": mode, "pki": pki.root, **kw})


LOGIN = Auth(username=USER, password_env=PASSWORD_ENV)


async def failure(endpoint: str, sec: Security | None, auth: Auth | None) -> BaseException:
    """What open_session raises (the test fails if it connects)."""
    with pytest.raises(Exception) as caught:
        client, _ = await open_session(endpoint, sec, auth, timeout_s=TIMEOUT_S)
        await client.disconnect()
    return caught.value


async def reason(endpoint: str, sec: Security | None, auth: Auth | None) -> str:
    """Why open_session fails (the test fails if it connects)."""
    return explain(await failure(endpoint, sec, auth), timeout_s=TIMEOUT_S, auth=auth)


def own_der(pki: Pki) -> bytes:
    return pki.own_certificate.read_bytes()


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
@pytest.mark.parametrize("policy", POLICIES)
async def test_connector_reads_over_every_policy_and_mode(
    secured: SecureSim, password: str, policy: str, mode: str
) -> None:
    entry = {
        "type": "opcua",
        "name": "secure",
        "endpoint": secured.endpoint,
        "security": {"policy": policy, "mode": mode, "pki": str(secured.pki.root)},
        "auth": {"username": USER, "password_env": PASSWORD_ENV},
        "mode": "poll",
        "poll_interval_s": 0.1,
        "timeout_s": TIMEOUT_S,
        "tags": [{"machine": "pasteurizer", "signal": "product_temp_c", "node": NODE}],
    }
    source: OpcUaInput = build(Config.model_validate(entry), site="s", line="line1")
    collector = Collector()
    task = asyncio.create_task(source.run(collector.emit))
    try:
        await collector.wait_for(lambda: any(s.quality is Quality.GOOD for s in collector.samples))
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
    expected = secured.sim.values()[("pasteurizer", "product_temp_c")]
    assert collector.samples[-1].value == pytest.approx(expected)
    assert source.stats.errors == 0


async def test_user_certificate_login(secured: SecureSim) -> None:
    auth = Auth(
        certificate=secured.user_pki.own_certificate, private_key=secured.user_pki.own_private_key
    )
    client, _ = await open_session(
        secured.endpoint, security(secured.pki), auth, timeout_s=TIMEOUT_S
    )
    try:
        value = await client.get_node(NODE).read_value()
    finally:
        await client.disconnect()
    assert value == pytest.approx(secured.sim.values()[("pasteurizer", "product_temp_c")])


async def test_unknown_server_certificate_is_refused_saved_and_then_trusted(
    secured: SecureSim, password: str, tmp_path: Path
) -> None:
    pki = secured.fresh_pki(tmp_path / "pki", trust_server=False)
    message = await reason(secured.endpoint, security(pki), LOGIN)
    (saved,) = pki.rejected.iterdir()
    assert f"saved to {saved}" in message
    assert f"mv '{saved}' '{pki.trusted}/'" in message
    assert saved.read_bytes() == secured.server_certificate.read_bytes()
    saved.rename(pki.trusted / saved.name)  # what the message tells the integrator to do
    client, _ = await open_session(secured.endpoint, security(pki), LOGIN, timeout_s=TIMEOUT_S)
    await client.disconnect()


async def test_trust_on_first_use_only_when_asked(
    secured: SecureSim, password: str, tmp_path: Path
) -> None:
    pki = secured.fresh_pki(tmp_path / "pki", trust_server=False)
    sec = security(pki, trust_on_first_use=True)
    client, notes = await open_session(secured.endpoint, sec, LOGIN, timeout_s=TIMEOUT_S)
    await client.disconnect()
    (trusted,) = pki.trusted.iterdir()
    assert notes == [
        f"trusted the server certificate of {secured.endpoint} on first use: {trusted}"
    ]
    assert not any(pki.rejected.iterdir())


async def test_pinned_server_certificate(secured: SecureSim, password: str, tmp_path: Path) -> None:
    pki = secured.fresh_pki(tmp_path / "pki", trust_server=False)
    pinned = security(pki, server_certificate=secured.server_certificate)
    client, _ = await open_session(secured.endpoint, pinned, LOGIN, timeout_s=TIMEOUT_S)
    await client.disconnect()
    wrong = security(pki, server_certificate=secured.pki.own_certificate)
    assert "is not the pinned server_certificate" in await reason(secured.endpoint, wrong, LOGIN)


async def test_wrong_password_is_refused_and_never_logged(
    secured: SecureSim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong-Secret-123")
    caplog.set_level(logging.DEBUG)
    for name in ("asyncua", "asyncua.client.ua_client.UASocketProtocol"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.DEBUG)
    for mode in ("Sign", "SignAndEncrypt"):
        message = await reason(secured.endpoint, security(secured.pki, mode=mode), LOGIN)
        assert message.startswith(f"login refused for user '{USER}' (BadUserAccessDenied)")
    assert "Sending:" in caplog.text  # asyncua did log its requests
    assert "wrong-Secret-123" not in caplog.text
    assert b"wrong-Secret-123".hex() not in caplog.text


async def test_anonymous_login_is_refused_on_the_secured_server(secured: SecureSim) -> None:
    message = await reason(secured.endpoint, security(secured.pki), None)
    assert message.startswith("login refused for an anonymous user (BadIdentityTokenRejected)")


async def test_server_refuses_a_client_certificate_it_does_not_trust(
    secured: SecureSim, password: str
) -> None:
    message = await reason(secured.endpoint, security(secured.stranger), LOGIN)
    assert message.startswith("the server refused this connector's certificate")


async def test_strict_trust_files_a_refused_client_until_it_is_moved_to_trusted(
    secured: SecureSim, password: str, tmp_path: Path
) -> None:
    newcomer = make_client_pki(tmp_path / "newcomer")
    shutil.copy(secured.server_certificate, newcomer.trusted)
    exc = await failure(secured.endpoint, security(newcomer), LOGIN)
    assert is_refusal(exc)
    server_folder = secured.server_certificate.parents[2]  # <root>/server/own/certs/x.der
    rejected = server_folder / "rejected"
    (filed,) = [p for p in rejected.iterdir() if p.read_bytes() == own_der(newcomer)]
    shutil.move(filed, server_folder / "trusted")
    client, _ = await open_session(secured.endpoint, security(newcomer), LOGIN, timeout_s=TIMEOUT_S)
    await client.disconnect()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"certificate": "nowhere/cert.der"}, "nowhere/cert.der does not exist; create one"),
        ({"private_key": "nowhere/key.pem"}, "private key file nowhere/key.pem does not exist"),
    ],
)
async def test_missing_certificate_files(
    secured: SecureSim, password: str, change: dict[str, str], expected: str
) -> None:
    message = await reason(secured.endpoint, security(secured.pki, **change), LOGIN)
    assert expected in message


async def test_missing_password_variable(
    secured: SecureSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    message = await reason(secured.endpoint, security(secured.pki), LOGIN)
    assert message == (
        f"environment variable {PASSWORD_ENV} (the password of user '{USER}') is not set"
    )


async def test_password_from_file(secured: SecureSim, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    auth = Auth(username=USER, password_file=secret)
    client, _ = await open_session(secured.endpoint, security(secured.pki), auth, timeout_s=5)
    await client.disconnect()


async def test_open_server_offers_no_secured_endpoint(secured: SecureSim) -> None:
    message = await reason(secured.server.endpoint, security(secured.pki), LOGIN)
    assert message == (
        "the server has no endpoint with policy Basic256Sha256 and mode SignAndEncrypt; "
        "it offers: None/None"
    )


async def test_config_without_security_warns_but_connects(
    secured: SecureSim, caplog: pytest.LogCaptureFixture
) -> None:
    entry = {
        "type": "opcua",
        "name": "legacy",
        "endpoint": secured.server.endpoint,
        "mode": "poll",
        "poll_interval_s": 0.1,
        "tags": [{"machine": "pasteurizer", "signal": "product_temp_c", "node": NODE}],
    }
    source = build(Config.model_validate(entry), site="s", line="line1")
    collector = Collector()
    task = asyncio.create_task(source.run(collector.emit))
    try:
        await collector.wait_for(lambda: any(s.quality is Quality.GOOD for s in collector.samples))
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=5)
    assert IMPLICIT_NONE_WARNING in caplog.text


async def test_check_reads_over_a_secured_session_and_names_a_refused_login(
    secured: SecureSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {
        "type": "opcua",
        "name": "secure",
        "endpoint": secured.endpoint,
        "security": {
            "policy": "Aes256_Sha256_RsaPss",
            "mode": "Sign",
            "pki": str(secured.pki.root),
        },
        "auth": {"username": USER, "password_env": PASSWORD_ENV},
        "tags": [{"machine": "pasteurizer", "signal": "product_temp_c", "node": NODE}],
    }
    config = Config.model_validate(entry)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    (tag,) = (await check(config)).tags
    assert tag.ok and tag.unit == "°C"
    monkeypatch.setenv(PASSWORD_ENV, "not-it")
    (tag,) = (await check(config)).tags
    assert tag.problem == (
        f"cannot connect: login refused for user '{USER}' (BadUserAccessDenied): "
        "check the username and password"
    )
