"""The client's certificate store: the usual OPC UA pki/ layout and the server trust decision.

    pki/own/certs/shopfloor.der      this connector's application instance certificate
    pki/own/private/shopfloor.pem    its private key (mode 0600)
    pki/trusted/certs/               server certificates (or their CAs) we accept
    pki/rejected/certs/              server certificates we refused, to be reviewed and moved

A server certificate is accepted when it is in trusted/certs, or was issued by a CA certificate
there, and is within its validity period. Anything else is refused and saved to rejected/certs,
so that the integrator can compare its thumbprint with the PLC's and move it. Blocking file
I/O: callers in a coroutine run these functions in a thread.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY_DAYS = 730
CERT_NAME = "shopfloor"


class PkiError(Exception):
    """A certificate problem an integrator must fix; the message says how."""


class UntrustedServerError(PkiError):
    """The server's certificate is not trusted; the message says where it was saved."""


@dataclass(frozen=True)
class Pki:
    """The folders of one pki/ tree."""

    root: Path

    @property
    def own_certificate(self) -> Path:
        return self.root / "own" / "certs" / f"{CERT_NAME}.der"

    @property
    def own_private_key(self) -> Path:
        return self.root / "own" / "private" / f"{CERT_NAME}.pem"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted" / "certs"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected" / "certs"

    def create_folders(self) -> None:
        for folder in (self.own_certificate.parent, self.trusted, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        self.own_private_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def trusted_certificates(self) -> Iterator[x509.Certificate]:
        """Every readable .der/.pem certificate in trusted/certs."""
        if not self.trusted.is_dir():
            return
        for path in sorted(self.trusted.iterdir()):
            if path.suffix.lower() in (".der", ".pem", ".crt", ".cer"):
                try:
                    yield load_certificate(path)
                except PkiError:
                    continue


def default_application_uri(hostname: str | None = None) -> str:
    """`urn:<host>:shopfloor:connector`: unique per installation, stable across restarts."""
    return f"urn:{hostname or socket.gethostname()}:shopfloor:connector"


def create_certificate(
    pki: Pki,
    *,
    application_uri: str,
    hostnames: Sequence[str],
    days: int = DEFAULT_VALIDITY_DAYS,
    force: bool = False,
) -> x509.Certificate:
    """A self-signed application instance certificate and key in pki/own (OPC 10000-6 6.2.2).

    Subject alternative names: the application URI (servers check it against the session's
    ApplicationUri) and every host name or IP address given.
    """
    if not force and (pki.own_certificate.exists() or pki.own_private_key.exists()):
        raise PkiError(
            f"{pki.own_certificate} already exists; pass --force to replace it (the PLCs that "
            "trust the old certificate must then trust the new one)"
        )
    if days < 1:
        raise PkiError(f"validity of {days} days is too short; give at least 1")
    pki.create_folders()
    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    names += [_alt_name(host) for host in hostnames]
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        application_uri,
        {"organizationName": "Shopfloor"},
        names,
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        days=days,
    )
    fd = os.open(pki.own_private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(cert_gen.dump_private_key_as_pem(key))
    pki.own_certificate.write_bytes(cert.public_bytes(Encoding.DER))
    return cert


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def load_certificate(path: Path) -> x509.Certificate:
    """A DER or PEM certificate; PkiError that names the file and the fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PkiError(
            f"certificate file {path} does not exist; create one with `shopfloor certs`"
        ) from None
    except OSError as exc:
        raise PkiError(f"cannot read certificate file {path}: {exc.strerror}") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(first_der(data))
    except ValueError:
        raise PkiError(f"{path} is not a DER or PEM certificate") from None


def first_der(chain: bytes) -> bytes:
    """The first certificate of a DER chain (servers may send their CA chain behind it)."""
    if len(chain) < 2 or chain[0] != 0x30:
        return chain
    length = chain[1]
    header = 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(chain[2 : 2 + size], "big")
        header += size
    return chain[: header + length]


def application_uri(cert: x509.Certificate) -> str | None:
    """The URI subject alternative name: what a peer checks the ApplicationUri against."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 thumbprint as PLC web pages and UaExpert show it (AA:BB:...)."""
    digest = hashlib.sha1(cert.public_bytes(Encoding.DER), usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "unnamed"


def check_server_certificate(
    pki: Pki,
    der: bytes,
    *,
    endpoint: str,
    pinned: Path | None = None,
    trust_on_first_use: bool = False,
) -> str | None:
    """Accept or refuse a server's certificate (raises UntrustedServerError when refused).

    `pinned`: only that certificate file is accepted. `trust_on_first_use`: an unknown
    certificate is trusted (saved to trusted/certs) unless a trusted one already has the same
    application URI (a changed certificate of a known server is refused). Returns a note for
    the log when a certificate was newly trusted.
    """
    cert = x509.load_der_x509_certificate(first_der(der))
    _check_validity(cert, endpoint)
    if pinned is not None:
        if load_certificate(pinned) == cert:
            return None
        saved = _save(pki.rejected, cert)
        raise UntrustedServerError(
            f"the server certificate of {endpoint} ({_identify(cert)}) is not the pinned "
            f"server_certificate {pinned}; it was saved to {saved}"
        )
    trusted = list(pki.trusted_certificates())
    if any(known == cert or _issued_by(cert, known) for known in trusted):
        return None
    uri = application_uri(cert)
    known_uri = any(application_uri(known) == uri for known in trusted)
    if trust_on_first_use and not known_uri:
        saved = _save(pki.trusted, cert)
        return f"trusted the server certificate of {endpoint} on first use: {saved}"
    saved = _save(pki.rejected, cert)
    why = "replaces a trusted certificate of the same server" if known_uri else "is not trusted"
    raise UntrustedServerError(
        f"the server certificate of {endpoint} ({_identify(cert)}) {why}; it was saved to "
        f"{saved}. If the thumbprint matches the PLC's, trust it: mv '{saved}' '{pki.trusted}/'"
    )


def _check_validity(cert: x509.Certificate, endpoint: str) -> None:
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise UntrustedServerError(
            f"the server certificate of {endpoint} ({_identify(cert)}) is valid only from "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}; "
            "renew it on the PLC"
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject or issuer == cert:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _identify(cert: x509.Certificate) -> str:
    return f"CN={common_name(cert)}, SHA-1 {thumbprint(cert)}"


def _save(folder: Path, cert: x509.Certificate) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", common_name(cert)).strip("_") or "server"
    path = folder / f"{safe}_{thumbprint(cert).replace(':', '')[:16]}.der"
    path.write_bytes(cert.public_bytes(Encoding.DER))
    return path
