"""Opening one OPC UA session with the configured security and login, and saying why it failed.

Shared by the connector, `shopfloor check` and `shopfloor browse`, so that all three connect
the same way and report the same one-line reasons. The server's certificate comes from its
endpoint list (read over an unsecured discovery channel, as the standard intends) and must pass
the pki trust check before any secured channel is opened with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies

from connectors.opcua.pki import (
    Pki,
    PkiError,
    application_uri,
    check_server_certificate,
    first_der,
    load_certificate,
)
from connectors.opcua.security import Auth, Security

_log = logging.getLogger(__name__)

_POLICY_CLASSES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_POLICY_NAMES = {cls.URI: name for name, cls in _POLICY_CLASSES.items()}
_POLICY_NAMES[security_policies.SecurityPolicyNone.URI] = "None"
_LOGIN_REFUSED = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadUserSignatureInvalid,
    }
)
_CERTIFICATE_REFUSED = frozenset(
    {
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadCertificateInvalid,
        ua.StatusCodes.BadCertificateUriInvalid,
        ua.StatusCodes.BadCertificateUseNotAllowed,
        ua.StatusCodes.BadCertificateTimeInvalid,
        ua.StatusCodes.BadCertificateRevoked,
    }
)


# How long a server keeps the session of a client that vanished: short, because PLCs have few
# session slots (the connector's watch probe keeps a live session active far more often).
SESSION_TIMEOUT_MS = 60_000  # an int, as asyncua's Client.session_timeout


class SessionSetupError(Exception):
    """The session cannot be set up as configured; the message is one line with the fix."""


class ChannelRefused(SessionSetupError):
    """The server answered our OpenSecureChannel request with a fault instead of a channel.

    Servers such as node-opcua (and many PLCs) do so when they do not trust the client's
    certificate yet; asyncua cannot decode that answer and fails an internal assertion, so the
    reason is given here instead.
    """


SESSION_FAILURES = (OSError, TimeoutError, ua.UaError, SessionSetupError, PkiError)
"""What opening or using a session raises for anything a server or network can do."""


class _NoSecretsInLogs(logging.Filter):
    """asyncua logs every request at DEBUG; an ActivateSession request holds the password."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, ua.ActivateSessionRequest) for arg in args)


_NO_SECRETS = _NoSecretsInLogs()


def guard_secrets() -> None:
    """Keep login requests out of asyncua's debug log (a no-op when already done)."""
    logging.getLogger("asyncua.client.ua_client.UASocketProtocol").addFilter(_NO_SECRETS)


async def open_session(
    endpoint: str,
    security: Security | None,
    auth: Auth | None,
    *,
    timeout_s: float,
    client: Client | None = None,
) -> tuple[Client, list[str]]:
    """A connected client, and notes worth logging (e.g. a certificate trusted on first use).

    `client` lets the caller set callbacks and timeouts first; by default one is built here.
    Every network step runs under `timeout_s`; on any failure the socket is closed.
    """
    guard_secrets()
    if client is None:
        client = Client(endpoint, timeout=timeout_s)
        client.session_timeout = SESSION_TIMEOUT_MS
    notes: list[str] = []
    try:
        if security is not None and not security.is_open:
            notes += await _secure(client, endpoint, security, timeout_s)
        if auth is not None:
            await _log_in_as(client, auth)
        async with asyncio.timeout(timeout_s):
            await client.connect()
    except AssertionError:
        client.disconnect_socket()
        if security is None or security.is_open:
            raise
        raise ChannelRefused(_certificate_refused("the secure channel was refused")) from None
    except BaseException:
        client.disconnect_socket()  # connect() cleans up on errors, not on timeout/cancel
        raise
    return client, notes


async def close_session(client: Client, timeout_s: float) -> None:
    """Close session, channel and socket, bounded in time even when the server is gone."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.disconnect()
    except Exception as exc:  # a server that is gone cannot confirm; close our end anyway
        _log.debug("disconnect: %r", exc)
        client.disconnect_socket()


def describe_session(security: Security | None, auth: Auth | None) -> str:
    """The security policy, mode and user a session was opened with, for the log.

    The connector opens only the endpoint whose policy and mode are configured (see
    `_server_certificate`), so the configured ones are the negotiated ones.
    """
    if security is None or security.is_open:
        channel = "SecurityPolicy None (no signing, no encryption)"
    else:
        channel = f"SecurityPolicy {security.policy}, mode {security.mode}"
    return f"{channel}, {auth.describe() if auth is not None else 'anonymous'}"


def is_refusal(exc: BaseException) -> bool:
    """The server refused our certificate or login, or we do not trust the server's: retrying
    cannot help until someone acts, and a PLC may lock an account after failed logins."""
    if isinstance(exc, ChannelRefused | PkiError):
        return True
    if isinstance(exc, ua.UaStatusCodeError):
        return exc.code in _LOGIN_REFUSED or exc.code in _CERTIFICATE_REFUSED
    return False


async def _secure(client: Client, endpoint: str, security: Security, timeout_s: float) -> list[str]:
    assert security.mode is not None  # validated: a policy always comes with a mode
    cert = await asyncio.to_thread(load_certificate, security.certificate_file)
    uri = application_uri(cert)
    if uri is None:
        raise SessionSetupError(
            f"{security.certificate_file} has no application URI (a URI subject alternative "
            "name); create the certificate with `shopfloor certs`"
        )
    client.application_uri = uri
    if not await asyncio.to_thread(security.private_key_file.is_file):
        raise SessionSetupError(
            f"private key file {security.private_key_file} does not exist; it is created with "
            "the certificate by `shopfloor certs`"
        )
    policy = _POLICY_CLASSES[security.policy]
    mode = getattr(ua.MessageSecurityMode, security.mode)
    async with asyncio.timeout(timeout_s):
        endpoints = await client.connect_and_get_server_endpoints()
    server_der = _server_certificate(endpoints, policy, mode, security)
    note = await asyncio.to_thread(
        check_server_certificate,
        Pki(security.pki),
        server_der,
        endpoint=endpoint,
        pinned=security.server_certificate,
        trust_on_first_use=security.trust_on_first_use,
    )
    try:
        await client.set_security(
            policy,
            str(security.certificate_file),
            str(security.private_key_file),
            server_certificate=server_der,
            mode=mode,
        )
    except (ValueError, TypeError) as exc:
        raise SessionSetupError(
            f"cannot use {security.private_key_file} with {security.certificate_file}: {exc}"
        ) from None
    return [note] if note else []


def _server_certificate(
    endpoints: list[ua.EndpointDescription],
    policy: type[security_policies.SecurityPolicy],
    mode: ua.MessageSecurityMode,
    security: Security,
) -> bytes:
    for ep in endpoints:
        if ep.SecurityPolicyUri == policy.URI and ep.SecurityMode == mode:
            if not ep.ServerCertificate:
                raise SessionSetupError("the server sent no certificate for its secured endpoint")
            return first_der(ep.ServerCertificate)
    offered = sorted(
        {
            f"{_POLICY_NAMES.get(ep.SecurityPolicyUri, ep.SecurityPolicyUri)}/"
            f"{ep.SecurityMode.name.rstrip('_')}"
            for ep in endpoints
        }
    )
    raise SessionSetupError(
        f"the server has no endpoint with policy {security.policy} and mode {security.mode}; "
        f"it offers: {', '.join(offered) or 'nothing'}"
    )


async def _log_in_as(client: Client, auth: Auth) -> None:
    if auth.username is not None:
        client.set_user(auth.username)
        client.set_password(await asyncio.to_thread(read_password, auth))
        return
    assert auth.certificate is not None and auth.private_key is not None
    try:
        await client.load_client_certificate(str(auth.certificate))
        await client.load_private_key(auth.private_key)
    except FileNotFoundError as exc:
        raise SessionSetupError(f"user certificate or key {exc.filename} does not exist") from None
    except ValueError:
        raise SessionSetupError(
            f"{auth.certificate} / {auth.private_key} is not a certificate and key pair"
        ) from None


def read_password(auth: Auth) -> str:
    """The password from its environment variable or file; the message never holds it."""
    who = f"the password of user {auth.username!r}"
    if auth.password_env is not None:
        password = os.environ.get(auth.password_env)
        if password is None:
            raise SessionSetupError(f"environment variable {auth.password_env} ({who}) is not set")
        return password
    assert auth.password_file is not None
    try:
        password = Path(auth.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SessionSetupError(
            f"cannot read password_file {auth.password_file} ({who}): {exc.strerror}"
        ) from None
    if not password:
        raise SessionSetupError(f"password_file {auth.password_file} ({who}) is empty")
    return password


def explain(exc: BaseException, *, timeout_s: float, auth: Auth | None = None) -> str:
    """One line saying why a session failed, and what to do about it."""
    if isinstance(exc, SessionSetupError | PkiError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timeout: no answer within {timeout_s:g} s"
    if isinstance(exc, ua.UaStatusCodeError):
        return _explain_status(exc.code, auth)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that host and port"
    if isinstance(exc, OSError):
        return f"cannot reach the server: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _certificate_refused(why: str) -> str:
    return (
        f"the server refused this connector's certificate ({why}): trust it on the PLC "
        "(copy pki/own/certs/shopfloor.der into its trusted list or accept it from its "
        "rejected list)"
    )


def _explain_status(code: int, auth: Auth | None) -> str:
    name = ua.StatusCode(ua.UInt32(code)).name
    if code in _LOGIN_REFUSED:
        who = auth.describe() if auth is not None else "an anonymous user"
        hint = (
            "check the username and password"
            if auth is not None
            else "the server wants a login: add auth"
        )
        return f"login refused for {who} ({name}): {hint}"
    if code in _CERTIFICATE_REFUSED:
        return _certificate_refused(name)
    if code == ua.StatusCodes.BadSecurityPolicyRejected:
        return f"the server rejected the security policy ({name}): pick one it offers"
    return f"the server answered {name}"
