"""The storage backends (InfluxDB v1, InfluxDB v2, embedded SQLite) behind the `Historian`
interface of core.storage.

A backend is chosen by a URL (argument, else $SHOPFLOOR_HISTORIAN, else the SQLite default):

    sqlite:PATH                       embedded file, the default (sqlite:shopfloor.db)
    influxdb://HOST:PORT/DATABASE     InfluxDB 1.x; INFLUX_USERNAME / INFLUX_PASSWORD if auth is on
    influxdbs://HOST:PORT/DATABASE    the same over TLS
    influxdb2://HOST:PORT             InfluxDB 2.x/3.x; INFLUX_ORG, INFLUX_BUCKET, INFLUX_TOKEN
    influxdb2s://HOST:PORT            the same over TLS

Secrets only ever come from the environment (INFLUX_PASSWORD, INFLUX_TOKEN) or from files it
names (INFLUX_PASSWORD_FILE, INFLUX_TOKEN_FILE), never from the URL, so URLs are safe to log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

from core.sample import Point, Quality, Sample
from core.secrets import secret
from core.storage import Historian, HistorianError, Reading

__all__ = [
    "DEFAULT_URL",
    "Historian",
    "HistorianError",
    "Point",
    "Quality",
    "Reading",
    "Sample",
    "describe",
    "open_historian",
]

DEFAULT_URL = "sqlite:shopfloor.db"
DEFAULT_INFLUX_PORT = 8086
_REDACTED = "REDACTED"
_FORMS = (
    "use sqlite:PATH, influxdb[s]://HOST:PORT/DATABASE or influxdb2[s]://HOST:PORT"
    " (as the argument or in SHOPFLOOR_HISTORIAN)"
)


def _resolve(url: str | None, environ: Mapping[str, str]) -> str:
    return url or environ.get("SHOPFLOOR_HISTORIAN") or DEFAULT_URL


def describe(url: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The historian URL as a status display or an error may show it: any user:password@
    removed, a ?query or #fragment (where a password may have been typed) blanked out."""
    resolved = _resolve(url, environ)
    if "://" not in resolved:
        scheme, _, rest = resolved.partition(":")
        return resolved if scheme == "sqlite" else f"{scheme}:{rest.rpartition('@')[2]}"
    parts = urlsplit(resolved)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(
        netloc=host,
        query=_REDACTED if parts.query else "",
        fragment=_REDACTED if parts.fragment else "",
    ).geturl()


def _required(environ: Mapping[str, str], name: str, why: str) -> str:
    value = secret(environ, name)
    if not value:
        raise HistorianError(
            f"{why} needs the environment variable {name} (or {name}_FILE); set it and retry"
        )
    return value


def _split_network_url(url: str) -> SplitResult:
    shown = describe(url, {})
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HistorianError(f"historian URL {shown}: bad host or port; {_FORMS}") from None
    if "@" in parts.netloc:
        raise HistorianError(
            f"historian URL {shown}: credentials do not belong in the URL;"
            " set INFLUX_USERNAME/INFLUX_PASSWORD or INFLUX_TOKEN instead"
        )
    if not parts.hostname:
        raise HistorianError(f"historian URL {shown}: no host; {_FORMS}")
    if parts.query or parts.fragment:
        raise HistorianError(f"historian URL {shown}: takes no ?query or #fragment; {_FORMS}")
    if port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{DEFAULT_INFLUX_PORT}")
    return parts


def _http_base(parts: SplitResult, tls: bool) -> str:
    return f"{'https' if tls else 'http'}://{parts.netloc}"


# Backends are imported when chosen: a SQLite user should not pay for aiohttp/influxdb-client.
def _open_influx_v1(url: str, tls: bool, environ: Mapping[str, str]) -> Historian:
    from historian.influx_v1 import InfluxV1Historian

    parts = _split_network_url(url)
    database = parts.path.strip("/")
    if not database or "/" in database:
        raise HistorianError(
            f"historian URL {describe(url, {})}: needs one database name,"
            " as in influxdb://HOST:PORT/DATABASE"
        )
    username = environ.get("INFLUX_USERNAME") or None
    password = secret(environ, "INFLUX_PASSWORD") or None
    if password and not username:
        raise HistorianError("INFLUX_PASSWORD is set but INFLUX_USERNAME is not; set both")
    return InfluxV1Historian(_http_base(parts, tls), database, username=username, password=password)


def _open_influx_v2(url: str, tls: bool, environ: Mapping[str, str]) -> Historian:
    from historian.influx_v2 import InfluxV2Historian

    parts = _split_network_url(url)
    if parts.path.strip("/"):
        raise HistorianError(
            f"historian URL {describe(url, {})}: influxdb2:// takes no path;"
            " name the bucket in INFLUX_BUCKET"
        )
    why = "an influxdb2 historian"
    return InfluxV2Historian(
        _http_base(parts, tls),
        org=_required(environ, "INFLUX_ORG", why),
        bucket=_required(environ, "INFLUX_BUCKET", why),
        token=_required(environ, "INFLUX_TOKEN", why),
    )


def open_historian(url: str | None = None, environ: Mapping[str, str] = os.environ) -> Historian:
    """The historian a URL names (see the module docstring); connects lazily on first use.

    A malformed URL or a missing environment variable raises HistorianError with a one-line
    message naming what to fix; secrets never appear in it.
    """
    resolved = _resolve(url, environ)
    scheme, _, rest = resolved.partition(":")
    if scheme == "sqlite":
        from historian.sqlite import SQLiteHistorian

        if not rest:
            raise HistorianError("historian URL sqlite: needs a file path, as in sqlite:PATH")
        return SQLiteHistorian(rest)
    openers = {
        "influxdb": (_open_influx_v1, False),
        "influxdbs": (_open_influx_v1, True),
        "influxdb2": (_open_influx_v2, False),
        "influxdb2s": (_open_influx_v2, True),
    }
    if scheme not in openers or not rest.startswith("//"):
        raise HistorianError(f"historian URL {describe(resolved, {})} not understood; {_FORMS}")
    opener, tls = openers[scheme]
    return opener(resolved, tls, environ)
