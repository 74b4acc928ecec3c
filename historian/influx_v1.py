"""InfluxDB 1.x over its HTTP API: POST /write with line protocol, POST /query with InfluxQL.

One keep-alive aiohttp session per historian, created on first use (aiohttp needs a running
loop), every request under `asyncio.timeout`. Writes go out in requests of at most
`batch_size` points, one after the other, so a later write of the same series and timestamp
wins as it does for a single request. Errors become `HistorianError` with the server's message;
`retryable` tells a spool whether to keep the batch (network, timeout, 5xx, 429, and 401/403/404:
set-up errors an operator fixes) or isolate the bad records in it (400 and the like).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from core.sample import Point, Sample
from core.storage import Historian, HistorianError, Reading, retryable_status
from historian.influxql import (
    latest_query,
    parse_latest,
    parse_points,
    points_query,
    quote_ident,
)
from historian.lineprotocol import check_samples, format_points, format_samples

log = logging.getLogger(__name__)

BATCH_SIZE = 5_000


def _server_message(status: int, body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:500] or f"HTTP {status}"


def _basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class InfluxHTTP:
    """The HTTP side of an InfluxDB server: one session, timeouts, errors as HistorianError.

    `headers` (e.g. Authorization) are sent with every request and never shown: `repr` is the
    base URL only.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"InfluxHTTP({self.base_url})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=4),
            )
        return self._session

    async def request(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        data: bytes | Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """POST to `path`; the response body, or HistorianError for HTTP >= 400 and failures."""
        url = f"{self.base_url}{path}"
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._client().post(url, params=params, data=data, headers=headers) as resp,
            ):
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise HistorianError(
                f"InfluxDB at {self.base_url} did not answer within {self._timeout} s",
                retryable=True,
            ) from None
        except aiohttp.ClientError as exc:
            raise HistorianError(
                f"InfluxDB at {self.base_url} unreachable: {exc}", retryable=True
            ) from exc
        if status >= 400:
            raise HistorianError(
                f"InfluxDB {path} answered {status}: {_server_message(status, body)}",
                retryable=retryable_status(status),
            )
        return body

    async def query(self, database: str, query: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; the JSON chunks of the answer (ns epoch timestamps).

        Chunked, because a plain answer stops at the server's max-row-limit (10,000 in 1.x).
        """
        params = {"db": database, "epoch": "ns", "chunked": "true", "chunk_size": "10000"}
        body = await self.request("/query", params=params, data={"q": query})
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class InfluxQLHistorian(Historian):
    """What InfluxDB 1.x and 2.x/3.x share: InfluxQL reads over /query, batching, lazy setup.

    Subclasses say how a batch of line protocol is written and what happens on first use.
    """

    # influxd parses concurrent writes on cores of its own, and points carry their timestamps:
    # with one write in flight it worked at one core while the next batch waited (Modbus bench)
    writes_in_flight = 2

    def __init__(self, http: InfluxHTTP, database: str, *, batch_size: int = BATCH_SIZE) -> None:
        self._http = http
        self.base_url = http.base_url
        self.database = database
        self._batch_size = batch_size
        self._ready = False
        self._ready_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        scheme, _, host = self.base_url.partition("://")
        return f"influxdb{'s' if scheme == 'https' else ''}://{host}/{self.database}"

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._prepare()
                self._ready = True

    async def _prepare(self) -> None:
        """Runs once before the first request."""

    @abstractmethod
    async def _write_lines(self, body: str) -> None:
        """Write one batch of newline-separated line protocol (ns timestamps)."""

    def _chunks(self, records: Sequence[Any]) -> list[Sequence[Any]]:
        size = self._batch_size
        return [records[i : i + size] for i in range(0, len(records), size)]

    async def _write_bodies(self, bodies: Iterable[str]) -> None:
        """Send batches in order, each formatted as it is taken; a record that cannot be
        written must fail before anything is sent (the caller formats or checks them first)."""
        await self._ensure_ready()
        for body in bodies:
            if body:
                await self._write_lines(body)

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        """A chunk's text is made only when it is sent: one poll of 60,000 registers is 12
        bodies, ~6 MB of text if all were held at once."""
        check_samples(samples)
        await self._write_bodies(format_samples(c) for c in self._chunks(samples))

    async def write_points(self, points: Sequence[Point]) -> None:
        await self._write_bodies([format_points(c) for c in self._chunks(points)])

    async def _query(self, query: str) -> list[dict[str, Any]]:
        await self._ensure_ready()
        return await self._http.query(self.database, query)

    async def latest(
        self,
        *,
        machine: str | None = None,
        signal: str | None = None,
        since_ns: int | None = None,
    ) -> list[Reading]:
        query = latest_query(machine=machine, signal=signal, since_ns=since_ns)
        return parse_latest(await self._query(query))

    async def points(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Point]:
        query = points_query(measurement, tags=tags, start_ns=start_ns, end_ns=end_ns)
        return parse_points(measurement, await self._query(query))

    async def close(self) -> None:
        await self._http.close()


class InfluxV1Historian(InfluxQLHistorian):
    """The historian on an InfluxDB 1.x database (basic auth optional)."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        gzip_writes: bool = False,
        create_database: bool = True,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        headers = {"Authorization": _basic_auth(username, password or "")} if username else {}
        super().__init__(
            InfluxHTTP(url, headers=headers, timeout=timeout), database, batch_size=batch_size
        )
        self._gzip = gzip_writes
        self._create_database = create_database

    async def _prepare(self) -> None:
        """Create the database if missing; without admin rights, carry on (it may exist)."""
        if not self._create_database:
            return
        try:
            result = await self._http.query(
                self.database, f"CREATE DATABASE {quote_ident(self.database)}"
            )
        except HistorianError as exc:
            if exc.retryable:
                raise
            log.info("could not create database %s: %s", self.database, exc)
            return
        errors = [r["error"] for c in result for r in c.get("results", []) if "error" in r]
        if errors:
            log.info("could not create database %s: %s", self.database, errors[0])

    async def _write_lines(self, body: str) -> None:
        data = body.encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        await self._http.request(
            "/write", params={"db": self.database, "precision": "ns"}, data=data, headers=headers
        )
