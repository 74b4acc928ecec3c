"""InfluxDB 2.x/3.x (and 1.8+): writes through influxdb-client's async API, reads over InfluxQL.

Dashboards and analytics query in InfluxQL everywhere, so reads go to the
v1-compatible /query endpoint with the bucket as database and `Authorization: Token ...`
(2.x needs a DBRP mapping for the bucket, which `influx v1 dbrp` creates). The client is built
on first use because influxdb-client insists on being created inside a running loop.
"""

from __future__ import annotations

import asyncio

import aiohttp
from influxdb_client import WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync

from core.storage import HistorianError, retryable_status
from historian.influx_v1 import BATCH_SIZE, InfluxHTTP, InfluxQLHistorian


class InfluxV2Historian(InfluxQLHistorian):
    """The historian on an InfluxDB 2.x/3.x bucket; the token is never shown."""

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: str,
        timeout: float = 10.0,
        gzip_writes: bool = False,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        http = InfluxHTTP(url, headers={"Authorization": f"Token {token}"}, timeout=timeout)
        super().__init__(http, bucket, batch_size=batch_size)
        self.org = org
        self._token = token
        self._timeout = timeout
        self._gzip = gzip_writes
        self._client: InfluxDBClientAsync | None = None
        self._write_api: WriteApiAsync | None = None

    def describe(self) -> str:
        scheme, _, host = self.base_url.partition("://")
        tls = "s" if scheme == "https" else ""
        return f"influxdb2{tls}://{host} (org {self.org}, bucket {self.database})"

    async def _prepare(self) -> None:
        self._client = InfluxDBClientAsync(
            url=self.base_url,
            token=self._token,
            org=self.org,
            timeout=int(self._timeout * 1000),
            enable_gzip=self._gzip,
        )
        self._write_api = self._client.write_api()

    async def _write_lines(self, body: str) -> None:
        assert self._write_api is not None, "_prepare runs before any write"
        where = f"InfluxDB at {self.base_url}"
        try:
            async with asyncio.timeout(self._timeout):
                await self._write_api.write(
                    bucket=self.database,
                    org=self.org,
                    record=body,
                    # influxdb-client annotates the parameter with the class WritePrecision,
                    # whose values are its str constants such as this one
                    write_precision=WritePrecision.NS,  # type: ignore[arg-type]
                )
        except TimeoutError:
            raise HistorianError(
                f"{where} did not answer within {self._timeout} s", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise HistorianError(f"{where} unreachable: {exc}", retryable=True) from exc
        except InfluxDBError as exc:
            status = int(getattr(exc, "status", 0) or 0)
            raise HistorianError(
                f"{where} refused the write ({status or 'no status'}): {exc.message}",
                retryable=status == 0 or retryable_status(status),
            ) from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._write_api = None
            self._ready = False
        await super().close()
