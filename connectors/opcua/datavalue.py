"""OPC UA DataValues -> `historian.Sample`: value, quality and source timestamp.

These run once per notification, so they avoid per-call allocation: the connector's hot path
(`decode`) makes no Sample at all, its values go into a columnar `SampleBatch`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from core.sample import Quality, Sample, SeriesKey

# The two top bits of a StatusCode are its severity: 00 good, 01 uncertain, 10 bad, 11 reserved.
QUALITY_BY_SEVERITY = (Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.BAD)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
NAN = math.nan


@dataclass(frozen=True, slots=True)
class Series:
    """Where a tag's samples go: the series identity of the `telemetry` measurement."""

    site: str
    line: str
    machine: str
    signal: str

    @property
    def key(self) -> SeriesKey:
        return (self.site, self.line, self.machine, self.signal)

    def sample(self, value: float, quality: Quality, ts_ns: int) -> Sample:
        return Sample(self.line, self.machine, self.signal, value, quality, ts_ns, self.site)

    def bad(self, ts_ns: int) -> Sample:
        """The marker written when the tag cannot be read (connection lost, node unknown)."""
        return Sample(self.line, self.machine, self.signal, NAN, Quality.BAD, ts_ns, self.site)


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Map a StatusCode's severity onto the data model's quality field (None means Good)."""
    return Quality.GOOD if status is None else QUALITY_BY_SEVERITY[status.value >> 30]


def checked_value(dv: ua.DataValue) -> Any:
    """The value of a DataValue (None if it has none); asyncua's UaStatusCodeError unless its
    status is Good (no status means Good)."""
    if dv.StatusCode is not None:
        dv.StatusCode.check()
    return None if dv.Value is None else dv.Value.Value


def bad_status(status: ua.StatusCode) -> str:
    """The BAD reason of a value the server itself marks Bad."""
    return f"server reports {status.name}"


def datetime_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch; asyncua gives aware UTC, older code paths naive UTC."""
    epoch = _EPOCH_NAIVE if dt.tzinfo is None else _EPOCH_UTC
    return (dt - epoch) // _ONE_US * 1000


def to_sample(series: Series, dv: ua.DataValue) -> tuple[Sample, str | None]:
    """The sample for one DataValue, and the reason when it is BAD (None when it is not)."""
    value, quality, ts, reason = decode(dv)
    return series.sample(value, quality, ts), reason


Decoded = tuple[int, float, Quality, int, str | None]
"""A tag index (client handle) with its value, quality, timestamp (ns) and BAD reason."""


def decoded(pairs: Iterable[tuple[int, ua.DataValue]]) -> Iterator[Decoded]:
    """`decode` of each (tag index, DataValue) pair."""
    for index, dv in pairs:
        yield (index, *decode(dv))


def decode(dv: ua.DataValue) -> tuple[float, Quality, int, str | None]:
    """Value, quality and timestamp (ns) of one DataValue, and the reason when it is BAD.

    Timestamps: source, else server, else now. A Bad status carries NaN (its value is not
    usable); an Uncertain one keeps its value. A non-numeric value becomes BAD.
    """
    dt = dv.SourceTimestamp or dv.ServerTimestamp
    ts = time.time_ns() if dt is None else datetime_ns(dt)
    status = dv.StatusCode
    quality = quality_of(status)
    if quality is Quality.BAD and status is not None:  # None is Good
        return NAN, quality, ts, bad_status(status)
    raw = None if dv.Value is None else dv.Value.Value
    if isinstance(raw, int | float):  # bool is an int: True -> 1.0
        return float(raw), quality, ts, None
    return NAN, Quality.BAD, ts, f"value {raw!r:.40} of type {type(raw).__name__} is not numeric"
