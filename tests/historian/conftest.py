"""Backends under test: every behaviour test runs against each of them.

InfluxDB 1.6.7 has no /api/v2, so the v2 backend talks to the real influxd through a small
compatibility layer, as 1.8+ provides: /api/v2/write?bucket= becomes /write?db=, /query is
passed through, and both check the `Authorization: Token` header the v2 backend must send.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from historian import Historian, open_historian
from historian.influx_v2 import InfluxV2Historian

V2_TOKEN = "s3cret-token"


@dataclass
class V2Compat:
    """The running compatibility server and what it saw."""

    url: str
    token: str = V2_TOKEN
    writes: list[dict[str, str]] = field(default_factory=list)


def _v2_compat_app(upstream: str, seen: V2Compat) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    def authorised(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {V2_TOKEN}"

    async def forward(request: web.Request, path: str, params: dict[str, str]) -> web.Response:
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "text/plain")}
        async with request.app[session_key].post(
            f"{upstream}{path}", params=params, data=body, headers=headers
        ) as resp:
            return web.Response(
                status=resp.status, body=await resp.read(), content_type="application/json"
            )

    async def write(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"code": "unauthorized", "message": "bad token"}, status=401)
        query = request.query
        seen.writes.append({**query, "content-type": request.headers.get("Content-Type", "")})
        params = {"db": query["bucket"], "precision": query.get("precision", "ns")}
        return await forward(request, "/write", params)

    async def query(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": "bad token"}, status=401)
        return await forward(request, "/query", dict(request.query))

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app[session_key] = session
            yield

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    app.router.add_post("/query", query)
    app.cleanup_ctx.append(session_ctx)
    return app


def _serve(app: web.Application, started: queue.Queue[tuple[object, object]]) -> None:
    """Thread body: run `app` on a loop of its own until asked to stop."""

    async def main() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        started.put((runner.addresses[0][1], lambda: loop.call_soon_threadsafe(stop.set)))
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


@pytest.fixture(scope="session")
def v2_compat(influxdb_url: str) -> Iterator[V2Compat]:
    """A v2-style endpoint in front of the session's InfluxDB, for the whole session.

    It runs on a thread with its own loop so that every test's loop can use it.
    """
    upstream = "http://" + urllib.parse.urlsplit(influxdb_url).netloc
    seen = V2Compat(url="")
    started: queue.Queue[tuple[object, object]] = queue.Queue()
    thread = threading.Thread(target=_serve, args=(_v2_compat_app(upstream, seen), started))
    thread.start()
    port, stop = started.get(timeout=10)
    seen.url = f"http://127.0.0.1:{port}"
    try:
        yield seen
    finally:
        stop()  # type: ignore[operator]
        thread.join(timeout=10)


def _open(request: pytest.FixtureRequest, backend: str, tmp_path_str: str) -> Historian:
    if backend == "sqlite":
        return open_historian(f"sqlite:{tmp_path_str}/historian.db")
    if backend == "influxdb_v1":
        return open_historian(request.getfixturevalue("influx_db_url"))
    compat: V2Compat = request.getfixturevalue("v2_compat")
    bucket = request.getfixturevalue("influx_db_url").rsplit("/", 1)[1]
    return InfluxV2Historian(compat.url, org="plant", bucket=bucket, token=V2_TOKEN)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("influxdb_v1", marks=pytest.mark.influxdb),
        pytest.param("influxdb_v2", marks=pytest.mark.influxdb),
    ]
)
async def historian(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Historian]:
    """Each backend in turn, empty."""
    store = _open(request, request.param, str(tmp_path))
    try:
        yield store
    finally:
        await store.close()
