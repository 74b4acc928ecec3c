"""MQTT: publishing samples into a unified namespace on a broker, and reading them back.

A broker is named by a URL; nothing secret goes in it, so it is safe to log:

    mqtt://HOST:PORT[?OPTIONS]     plain MQTT 5 (port 1883 by default)
    mqtts://HOST:PORT[?OPTIONS]    over TLS (port 8883 by default)

Options: `group` (Sparkplug group id, default `shopfloor`), `node` (Sparkplug edge node id,
default the host name), `area` (the ISA-95 area in the JSON topics, default `production`),
`format` (`sparkplug`, `json` or `sparkplug,json`, the default), `share` (the shared
subscription group of `shopfloor ingest`, default `shopfloor`), `ingest` (for a publisher:
the share group it waits for, see below).

Mosquitto 2.0 keeps a persistent session's plain subscriptions over a restart, but not its
shared ones: until the workers of a group subscribe again, what is published to the group's
topics reaches nobody, and the broker still acknowledges it. A publisher given `ingest=GROUP`
therefore publishes nothing on a new connection until a worker of GROUP has answered it on
that connection (`presence_topics`): the worker answers only once its own subscriptions are in
place, and both connections are to the same broker run, so the group is subscribed.

Credentials and TLS files come from the environment or from files it names: MQTT_USERNAME,
MQTT_PASSWORD (or MQTT_PASSWORD_FILE), MQTT_CA_FILE, MQTT_CERT_FILE and MQTT_KEY_FILE.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core.secrets import secret
from core.storage import HistorianError

FORMATS = ("sparkplug", "json")
_OPTIONS = {"group", "node", "area", "format", "share", "ingest"}
PRESENCE = "shopfloor/v1/ingest"  # PRESENCE/GROUP/ask (publishers), PRESENCE/GROUP/here (workers)
_FORMS = "use mqtt://HOST:PORT or mqtts://HOST:PORT, options as ?group=G&node=N (see --help)"
_ID = re.compile(r"[^A-Za-z0-9_.:-]")  # no MQTT wildcard, separator or space in an id

log = logging.getLogger(__name__)


def clean_id(text: str) -> str:
    """A name fit for a Sparkplug id or a topic level."""
    return _ID.sub("_", text) or "_"


def presence_topics(share: str) -> tuple[str, str]:
    """(ask, here): where a publisher asks whether a worker of the share group is subscribed,
    and where the workers say so."""
    return f"{PRESENCE}/{share}/ask", f"{PRESENCE}/{share}/here"


@dataclass(frozen=True, slots=True)
class Broker:
    """Where a broker is and how to log in; `client()` builds an aiomqtt client for it."""

    host: str
    port: int
    tls: bool
    group: str
    node: str
    area: str
    formats: tuple[str, ...]
    share: str
    ingest: str | None = None
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None

    def describe(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def client(self, identifier: str, **options: Any) -> Any:
        """An MQTT 5 client (not yet connected) for this broker; `options` go to aiomqtt."""
        import aiomqtt

        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            username=self.username,
            password=self.password,
            tls_context=self.tls_context,
            **options,
        )


def _tls_context(files: Mapping[str, str | None]) -> ssl.SSLContext:
    """The TLS settings, checked now: a bad file stops the command before it starts."""
    try:
        context = ssl.create_default_context(cafile=files["ca"])
        if files["cert"]:
            context.load_cert_chain(files["cert"], files["key"])
    except (OSError, ssl.SSLError) as exc:
        raise HistorianError(
            f"MQTT TLS files (MQTT_CA_FILE, MQTT_CERT_FILE, MQTT_KEY_FILE): {exc}"
        ) from None
    return context


def open_broker(url: str, environ: Mapping[str, str] = os.environ) -> Broker:
    """The broker a URL names; a malformed URL or unreadable file is a HistorianError naming
    what to fix."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HistorianError(f"broker URL {url}: bad host or port; {_FORMS}") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise HistorianError(f"broker URL {url} not understood; {_FORMS}")
    if "@" in parts.netloc:
        raise HistorianError(
            f"broker URL {parts.scheme}://{parts.netloc.rpartition('@')[2]}: credentials do not "
            "belong in the URL; set MQTT_USERNAME and MQTT_PASSWORD (or MQTT_PASSWORD_FILE)"
        )
    if parts.path.strip("/") or parts.fragment:
        raise HistorianError(f"broker URL {url}: takes no path or #fragment; {_FORMS}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(query.keys() - _OPTIONS)
    if unknown:
        raise HistorianError(
            f"broker URL {url}: unknown option {unknown[0]!r}; known: {', '.join(sorted(_OPTIONS))}"
        )
    formats = tuple(f.strip() for f in query.get("format", ",".join(FORMATS)).split(",") if f)
    if not formats or set(formats) - set(FORMATS):
        raise HistorianError(f"broker URL {url}: format must be sparkplug, json or sparkplug,json")
    tls = parts.scheme == "mqtts"
    files = {name: environ.get(f"MQTT_{name.upper()}_FILE") or None for name in ("ca", "cert")}
    files["key"] = environ.get("MQTT_KEY_FILE") or None
    for name, path in files.items():
        if path and not os.path.isfile(path):
            raise HistorianError(f"MQTT_{name.upper()}_FILE={path}: no such file")
    password = secret(environ, "MQTT_PASSWORD") or None
    username = environ.get("MQTT_USERNAME") or None
    if password and not username:
        raise HistorianError("MQTT_PASSWORD is set but MQTT_USERNAME is not; set both")
    if password and not tls:
        log.warning(
            "broker %s://%s:%s: MQTT_PASSWORD goes over the network in plain text; use "
            "mqtts:// (TLS) for a broker that asks for a password",
            parts.scheme,
            parts.hostname,
            port or 1883,
        )
    return Broker(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        group=clean_id(query.get("group", "shopfloor")),
        node=clean_id(query.get("node") or socket.gethostname()),
        area=clean_id(query.get("area", "production")),
        formats=formats,
        share=clean_id(query.get("share", "shopfloor")),
        ingest=clean_id(query["ingest"]) if query.get("ingest") else None,
        username=username,
        password=password,
        tls_context=_tls_context(files) if tls else None,
    )
