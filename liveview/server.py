"""The live view's web server (aiohttp): the page, its assets from this package, and two JSON
reads of the historian.

The page asks; the server never polls on its own. With nobody looking it holds a listening
socket and nothing else runs, and however many tabs are open the historian is read at most
once per `MIN_INTERVAL_S` for the overview.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

from core.storage import Historian, HistorianError
from liveview.snapshot import Json, overview, trend

STATIC = Path(__file__).parent / "static"
MIN_INTERVAL_S = 1.0
# The page and its assets come from this server only: no CDN, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class LiveView:
    """Serves the page on `host:port` (0: a free port) while used as `async with`."""

    def __init__(
        self,
        historian: Historian,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        machines: Sequence[str] = (),
        title: str = "Shopfloor",
    ) -> None:
        self.historian = historian
        self.host = host
        self.port = port
        self.machines = list(machines)  # the line's order, for the picture
        self.title = title
        self._runner: web.AppRunner | None = None
        self._cached: tuple[float, Json] | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        """Where a browser finds the page (the port actually bound)."""
        if self._runner is None:
            raise RuntimeError("the live view is not serving")
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    async def start(self) -> None:
        """Listen; an address in use (or not ours) raises OSError, nothing left open."""
        app = web.Application(middlewares=[_headers])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/overview", self._overview)
        app.router.add_get("/api/trend", self._trend)
        app.router.add_static("/assets/", STATIC)
        app.router.add_get("/favicon.ico", _no_icon)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _page(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _overview(self, _request: web.Request) -> web.Response:
        async with self._lock:  # tabs asking at once share one read
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= MIN_INTERVAL_S:
                body = await _read(overview(self.historian, self.machines))
                self._cached = (now, {**body, "title": self.title})
            return web.json_response(self._cached[1])

    async def _trend(self, request: web.Request) -> web.Response:
        machine = request.query.get("machine", "")
        try:
            after = int(request.query["after"]) if "after" in request.query else None
        except ValueError:
            raise web.HTTPBadRequest(
                text="after: nanoseconds since the epoch, as `until` gave them"
            ) from None
        return web.json_response(await _read(trend(self.historian, machine, after)))


async def _read(query: Awaitable[Json]) -> Json:
    """A historian read for the page; a historian that fails is a 503 the page shows, not a
    traceback."""
    try:
        return await query
    except HistorianError as exc:
        raise web.HTTPServiceUnavailable(text=f"the historian did not answer: {exc}") from None


async def _no_icon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response
