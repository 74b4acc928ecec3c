"""The recent telemetry of a stream, in memory, as a historian: what `detect --from mqtt://`
scores from.

Online detection reads the last minutes of telemetry from a historian every cycle. Fed from a
broker instead, the samples land here (a sample of the same series and timestamp overwrites,
as in every historian), and are kept for `hold_s` behind the newest one; whatever else is
written (anomaly points, events, kpi) and read (other measurements) goes to `store`, the
historian those belong in, or nowhere without one.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from core.sample import Point, Sample, SeriesKey
from core.schema import TELEMETRY
from core.storage import Historian, Reading
from uns.broker import clean_id, open_broker
from uns.ingest import MqttIngest


class RecentHistorian(Historian):
    """Holds the newest `hold_s` seconds of samples; passes the rest on to `store`."""

    def __init__(self, store: Historian | None = None, *, hold_s: float = 1800.0) -> None:
        self.store = store
        self.hold_s = hold_s
        self.samples_held = 0
        self._series: dict[SeriesKey, dict[int, Sample]] = {}
        self._newest_ns = -math.inf

    def describe(self) -> str:
        where = f", the rest to {self.store.describe()}" if self.store else ""
        return f"recent telemetry in memory ({self.hold_s:.0f} s{where})"

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            self._series.setdefault((s.site, s.line, s.machine, s.signal), {})[s.source_ts] = s
            self._newest_ns = max(self._newest_ns, s.source_ts)
        self._trim(self._newest_ns - self.hold_s * 1e9)

    def _trim(self, oldest_ns: float) -> None:
        held = 0
        for key, series in list(self._series.items()):
            for ts in [ts for ts in series if ts < oldest_ns]:
                del series[ts]
            if not series:
                del self._series[key]
            held += len(series)
        self.samples_held = held

    async def write_points(self, points: Sequence[Point]) -> None:
        if self.store is not None:
            await self.store.write_points(points)

    async def latest(
        self,
        *,
        machine: str | None = None,
        signal: str | None = None,
        since_ns: int | None = None,
    ) -> list[Reading]:
        readings = []
        for (site, line, machine_, signal_), series in sorted(self._series.items()):
            newest = series[max(series)]
            if machine not in (None, machine_) or signal not in (None, signal_):
                continue
            if since_ns is not None and newest.source_ts < since_ns:
                continue
            value, quality, ts = newest.value, newest.quality, newest.source_ts
            readings.append(Reading(site, line, machine_, signal_, value, quality, ts))
        return readings

    async def points(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Point]:
        if measurement != TELEMETRY.name:
            if self.store is None:
                return []
            return await self.store.points(measurement, tags=tags, start_ns=start_ns, end_ns=end_ns)
        low = -math.inf if start_ns is None else start_ns
        high = math.inf if end_ns is None else end_ns
        found = []
        for (site, line, machine, signal), series in self._series.items():
            point_tags = {"site": site, "line": line, "machine": machine, "signal": signal}
            if tags and any(point_tags.get(k) != v for k, v in tags.items()):
                continue
            for ts, s in series.items():
                if low <= ts < high:
                    fields = {"value": s.value, "quality": int(s.quality)}
                    found.append(Point(TELEMETRY.name, point_tags, fields, ts))
        found.sort(key=lambda p: p.ts)
        return found

    async def close(self) -> None:
        """The store is the caller's to close."""


DETECT_SESSION_S = 300  # a detector gone for longer leaves no queue growing on the broker


def open_stream(
    url: str, store: Historian, *, hold_s: float, client_id: str | None = None
) -> tuple[RecentHistorian, Coroutine[Any, Any, None]]:
    """What `detect --from mqtt://` scores: the namespace's samples, decoded as `ingest` decodes
    them, held in memory (the historian the detector reads) while `store` takes the anomaly
    points; and the coroutine that feeds it. The share group is the detector's own (its client
    id): in the historians' group it would take their messages away from them."""
    client_id = clean_id(client_id or f"shopfloor-detect-{socket.gethostname()}")
    broker = dataclasses.replace(open_broker(url), share=client_id)
    recent = RecentHistorian(store, hold_s=hold_s)
    source = MqttIngest(broker, _not_scored, client_id=client_id, session_expiry_s=DETECT_SESSION_S)
    return recent, source.run(recent.write_samples)


async def _not_scored(points: Sequence[Point]) -> None:
    """Events and health points are the historians' (ingest stores them), not the detector's."""
