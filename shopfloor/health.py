"""`GET /health`: what a compose healthcheck, a load balancer or a person with curl needs to know.

JSON with every connector (endpoint, connected, samples/s, errors, last error, how many tags
are bad right now and the distinct reasons why), the spool (bytes and samples held, drops,
memory-only) and the historian writer (written, rejected, retries, last error). HTTP 200 while
at least one input is connected (status "ok", or "degraded" when an input is down, a tag is
bad, the historian fails or the spool is in memory only); 503 when none is, so that a
healthcheck restarts a connector that lost every PLC.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from core.inputs import Input
from delivery.writer import Writer

RATE_INTERVAL_S = 1.0


class HealthServer:
    """Serves /health on `host:port` until cancelled."""

    def __init__(
        self,
        inputs: Sequence[Input],
        writer: Writer,
        *,
        host: str = "127.0.0.1",
        port: int,
    ) -> None:
        self.inputs = list(inputs)
        self.writer = writer
        self.host = host
        self.port = port
        self._rates = {item.name: 0.0 for item in self.inputs}
        self._counts = {item.name: item.stats.samples for item in self.inputs}

    def report(self) -> tuple[int, dict[str, Any]]:
        """The HTTP status and the JSON body of /health."""
        connectors = [
            {
                "name": item.name,
                "endpoint": item.endpoint,
                "connected": item.stats.connected,
                "samples": item.stats.samples,
                "samples_per_s": round(self._rates[item.name], 1),
                "errors": item.stats.errors,
                "reconnects": item.stats.reconnects,
                "last_error": item.stats.last_error,
                "tags_bad": len(item.stats.bad_tags),
                "errors_now": sorted(set(item.stats.bad_tags.values())),
            }
            for item in self.inputs
        ]
        stats = self.writer.stats
        spool = dataclasses.asdict(stats.spool)
        historian = {k: v for k, v in dataclasses.asdict(stats).items() if k != "spool"}
        connected = [c["connected"] for c in connectors]
        if not any(connected):
            status = "down"
        elif (
            all(connected)
            and not any(c["tags_bad"] for c in connectors)
            and stats.historian_ok
            and not stats.spool.memory_only
        ):
            status = "ok"
        else:
            status = "degraded"
        body = {
            "status": status,
            "time": time.time(),
            "connectors": connectors,
            "spool": spool,
            "historian": historian,
        }
        return (503 if status == "down" else 200), body

    async def _health(self, _request: web.Request) -> web.Response:
        code, body = self.report()
        return web.json_response(body, status=code)

    async def run(self) -> None:
        """Serve and keep the samples/s figures current until cancelled."""
        app = web.Application()
        app.router.add_get("/health", self._health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
            while True:
                await asyncio.sleep(RATE_INTERVAL_S)
                self._update_rates()
        finally:
            await runner.cleanup()

    def _update_rates(self) -> None:
        for item in self.inputs:
            count = item.stats.samples
            self._rates[item.name] = (count - self._counts[item.name]) / RATE_INTERVAL_S
            self._counts[item.name] = count
