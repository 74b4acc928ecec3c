"""The simulator's secured OPC UA server: what it offers, and its users and certificate.

Sessions over every policy and mode, logins and trust are exercised end to end by the
connector tests (tests/connectors/opcua/test_opcua_security.py); here the server's own side.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua
from cryptography import x509

from plc_sim.__main__ import main as sim_main
from plc_sim.opcua_server import (
    APPLICATION_URI,
    OpcUaServer,
    SecureEndpoint,
    ensure_server_certificate,
    load_users,
)
from plc_sim.process import Simulator
from plc_sim.spec import LineSpec
from testbed.influxd import free_port

TIMEOUT_S = 10
START_TIMEOUT_S = 40  # two servers load the standard address space: seconds on a busy machine
ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
SECURED = {
    ("Basic256Sha256", "Sign"),
    ("Basic256Sha256", "SignAndEncrypt"),
    ("Aes128_Sha256_RsaOaep", "Sign"),
    ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
    ("Aes256_Sha256_RsaPss", "Sign"),
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(
    line: LineSpec, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OpcUaServer]:
    cert, key = ensure_server_certificate(tmp_path_factory.mktemp("pki"), "127.0.0.1")
    sim = Simulator(line, seed=1)
    secure = SecureEndpoint(free_port(), cert, key, users={"operator": "pw"})
    served = OpcUaServer(
        line, host="127.0.0.1", port=free_port(), inject=sim.inject, clear=sim.clear, secure=secure
    )
    async with asyncio.timeout(START_TIMEOUT_S):
        await served.start()
    try:
        yield served
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await served.stop()


async def _endpoints(url: str) -> list[ua.EndpointDescription]:
    async with asyncio.timeout(TIMEOUT_S):
        return await Client(url).connect_and_get_server_endpoints()


def _policy(ep: ua.EndpointDescription) -> tuple[str, str]:
    name = ep.SecurityPolicyUri.rsplit("#", 1)[-1]
    return name, ep.SecurityMode.name.rstrip("_")


@ON_MODULE_LOOP
async def test_secured_server_offers_every_policy_and_mode_with_login_only(
    server: OpcUaServer,
) -> None:
    assert server.secure_endpoint is not None
    endpoints = await _endpoints(server.secure_endpoint)
    assert {_policy(ep) for ep in endpoints} == SECURED
    for ep in endpoints:
        tokens = {token.TokenType for token in ep.UserIdentityTokens}
        assert tokens == {ua.UserTokenType.UserName, ua.UserTokenType.Certificate}
        assert ep.Server.ApplicationUri == APPLICATION_URI


@ON_MODULE_LOOP
async def test_open_server_stays_open_and_anonymous(server: OpcUaServer) -> None:
    endpoints = await _endpoints(server.endpoint)
    assert {_policy(ep) for ep in endpoints} == {("None", "None")}
    client = Client(server.endpoint, timeout=5)
    async with asyncio.timeout(TIMEOUT_S):
        await client.connect()
        state = await client.nodes.server_state.read_value()
        await client.disconnect()
    assert state == ua.ServerState.Running


async def _raw_session_over_none(endpoint: str) -> Client:
    """A client that does what asyncua's own Client refuses to: a session over a
    SecurityPolicy None channel to a server that advertises only secured endpoints."""
    client = Client(endpoint, timeout=5)
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    params = ua.CreateSessionParameters(
        ClientNonce=b"n" * 32,
        EndpointUrl=endpoint,
        SessionName="raw",
        RequestedSessionTimeout=10_000,
        MaxResponseMessageSize=0,
        ClientDescription=ua.ApplicationDescription(
            ApplicationUri="urn:raw", ApplicationType=ua.ApplicationType.Client
        ),
    )
    await client.uaclient.create_session(params)
    return client


@ON_MODULE_LOOP
async def test_secured_server_refuses_a_clear_text_password_and_reads_over_a_none_channel(
    server: OpcUaServer,
) -> None:
    assert server.secure_endpoint is not None
    client = await _raw_session_over_none(server.secure_endpoint)
    try:
        login = ua.ActivateSessionParameters(
            LocaleIds=["en"],
            UserIdentityToken=ua.UserNameIdentityToken(
                PolicyId="username", UserName="operator", Password=b"pw"
            ),
        )
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await client.uaclient.activate_session(login)
        assert refused.value.code == ua.StatusCodes.BadIdentityTokenInvalid
        with pytest.raises(ua.UaStatusCodeError) as denied:
            await client.uaclient.read_attributes(
                [ua.NodeId("line1.pasteurizer.product_temp_c", 2)], ua.AttributeIds.Value
            )
        assert denied.value.code == ua.StatusCodes.BadUserAccessDenied
    finally:
        client.disconnect_socket()


@ON_MODULE_LOOP
async def test_secured_server_asks_for_encrypted_passwords_on_every_endpoint(
    server: OpcUaServer,
) -> None:
    assert server.secure_endpoint is not None
    for ep in await _endpoints(server.secure_endpoint):
        (token,) = [t for t in ep.UserIdentityTokens if t.TokenType == ua.UserTokenType.UserName]
        assert token.SecurityPolicyUri == ep.SecurityPolicyUri


def test_server_certificate_names_the_application_and_hosts(tmp_path: Path) -> None:
    cert_path, key_path = ensure_server_certificate(tmp_path, "10.0.0.7")
    cert = x509.load_der_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [APPLICATION_URI]
    assert {"localhost", "10.0.0.7", socket.gethostname()} <= set(
        names.get_values_for_type(x509.DNSName)
    )
    assert key_path.stat().st_mode & 0o077 == 0
    first = cert_path.read_bytes()
    assert ensure_server_certificate(tmp_path, "10.0.0.7") == (cert_path, key_path)
    assert cert_path.read_bytes() == first  # made once, then reused


def test_users_file() -> None:
    assert load_users("# who may log in\noperator:pw:with:colons\n\nviewer: x\n") == {
        "operator": "pw:with:colons",
        "viewer": " x",
    }
    with pytest.raises(ValueError, match="users line 2 is not name:password"):
        load_users("a:b\nnobody\n")


def test_secured_port_without_any_login_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOPFLOOR_SIM_USER", raising=False)
    assert sim_main(["--opcua-secure-port", "4843", "--modbus-port", "0"]) == 2
    assert "the secured endpoint needs a login" in capsys.readouterr().err
