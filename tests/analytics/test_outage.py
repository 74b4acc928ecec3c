"""The online detector rides out a historian outage: real InfluxDB behind a TCP relay that the
test cuts and restores. No crash, one warning, retries with backoff, points kept and written
once the historian is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, fit_machine_model
from core.sample import Quality, Sample
from historian import open_historian
from historian.influx_v1 import InfluxV1Historian
from linelab.simulated import simulated_telemetry
from tests.eventually import eventually

MACHINE = "filler"
NS = 10**9


class Relay:
    """A TCP relay on a fixed loopback port that can be cut (connections dropped, port closed)
    and restored, standing in for a network outage between analytics and the historian."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@pytest.fixture
async def relay(influx_db_url: str) -> AsyncIterator[Relay]:
    parts = urllib.parse.urlsplit(influx_db_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 8086))
    await relay.start()
    try:
        yield relay
    finally:
        with contextlib.suppress(Exception):
            await relay.cut()


@pytest.mark.influxdb
async def test_outage_is_logged_once_retried_and_recovered(
    influx_db_url: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    normal = simulated_telemetry(900, seed=3)[MACHINE]
    model = fit_machine_model(normal, TrainingSettings(min_rows=300))
    # the machine's telemetry as if it were happening now: the last 10 minutes plus the next
    now = time.time()
    shift = round(now) - 600 - normal.times_s[0]
    samples = [
        Sample("line1", MACHINE, s, v, Quality.GOOD, round((t + shift) * NS), site="demo")
        for t, s, v in zip(normal.times_s, normal.signals, normal.values, strict=True)
    ]
    database = urllib.parse.urlsplit(influx_db_url).path.strip("/")
    async with open_historian(influx_db_url) as direct:
        await direct.write_samples(samples)
        through_relay = InfluxV1Historian(f"http://127.0.0.1:{relay.port}", database, timeout=2)
        detector = OnlineDetector(
            through_relay,
            {MACHINE: model},
            lag_s=0.0,
            kpi_interval_s=None,
            retry_min_s=0.1,
            retry_max_s=0.4,
            cycle_timeout_s=3.0,
        )
        caplog.set_level(logging.INFO, logger="analytics.online")
        task = asyncio.create_task(detector.run())
        try:
            await eventually(lambda: detector.stats.scored >= 2, "scoring before the outage")
            await relay.cut()
            await eventually(lambda: detector.stats.failed_cycles >= 3, "failed cycles")
            assert not task.done(), "an outage must not end detection"
            scored = detector.stats.scored
            await relay.start()
            await eventually(lambda: detector.stats.scored >= scored + 2, "scoring again")
            await eventually(lambda: detector.stats.pending_points == 0, "pending written")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await through_relay.close()
        paused = [r for r in caplog.records if "paused" in r.getMessage()]
        back = [r for r in caplog.records if "is back" in r.getMessage()]
        assert len(paused) == 1 and len(back) == 1, caplog.text
        written = await direct.points("anomaly", tags={"machine": MACHINE})
        assert len(written) == detector.stats.scored, "every scored window is written once"
