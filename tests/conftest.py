"""Shared fixtures: a real InfluxDB 1.x for every test that needs one.

`influxdb_url` is the server for the whole session: INFLUX_URL (an http(s)://HOST:PORT of a
running 1.x server, INFLUX_DB optional) if set, else a throwaway influxd started here.
`influx_db_url` gives each test its own fresh database, dropped afterwards; `fresh_database`
does the same for fixtures of a wider scope.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from testbed.influxd import INSTALL_HINT, Influxd


def _influx_query(http_url: str, statement: str) -> None:
    """POST one InfluxQL statement (fixture setup is synchronous; no event loop here)."""
    data = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"{http_url}/query", data=data, method="POST")
    username = os.environ.get("INFLUX_USERNAME")
    if username:
        token = f"{username}:{os.environ.get('INFLUX_PASSWORD', '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()


def _as_historian_url(http_url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(http_url)
    scheme = "influxdbs" if parts.scheme == "https" else "influxdb"
    return f"{scheme}://{parts.netloc}/{database}"


def _http_url(historian_url: str) -> str:
    parts = urllib.parse.urlsplit(historian_url)
    return f"{'https' if parts.scheme == 'influxdbs' else 'http'}://{parts.netloc}"


@pytest.fixture(scope="session")
def influxdb_url() -> Iterator[str]:
    """influxdb://HOST:PORT/DATABASE of a real InfluxDB 1.x server."""
    external = os.environ.get("INFLUX_URL")
    database = os.environ.get("INFLUX_DB", "shopfloor_test")
    if external:
        yield _as_historian_url(external.rstrip("/"), database)
        return
    if shutil.which("influxd") is None:
        pytest.fail(f"these tests need a real InfluxDB: {INSTALL_HINT}", pytrace=False)
    with Influxd() as server:
        yield _as_historian_url(server.url, database)


@contextlib.contextmanager
def fresh_database(influxdb_url: str) -> Iterator[str]:
    """A database of its own on the test server (created now, dropped after), as a URL."""
    http_url = _http_url(influxdb_url)
    database = f"test_{uuid.uuid4().hex[:12]}"
    _influx_query(http_url, f'CREATE DATABASE "{database}"')
    try:
        yield _as_historian_url(http_url, database)
    finally:
        _influx_query(http_url, f'DROP DATABASE "{database}"')


@pytest.fixture
def influx_db_url(influxdb_url: str) -> Iterator[str]:
    """A database of its own for one test."""
    with fresh_database(influxdb_url) as url:
        yield url
