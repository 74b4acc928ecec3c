"""OPC UA DataValues -> `historian.Sample`: value, quality and source timestamp.

These run once per notification, so they avoid per-call allocation: the connector's hot path
(`decode`) makes no Sample at all, its values go into a columnar `SampleBatch`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
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


Other = tuple[int, Quality, int, Any]
"""A tag index with the quality, timestamp (ns) and raw value of a value that is not a number
(text, DateTime, array, ...): stored by `readings`, off the columnar hot path."""


def decoded(pairs: Iterable[tuple[int, ua.DataValue]], others: list[Other]) -> Iterator[Decoded]:
    """`decode` of each (tag index, DataValue) pair whose value is a number (or missing);
    the others are appended to `others`."""
    for index, dv in pairs:
        raw = None if dv.Value is None else dv.Value.Value
        if raw is None or isinstance(raw, int | float):
            yield (index, *decode(dv))
            continue
        quality = quality_of(dv.StatusCode)
        if quality is Quality.BAD:
            yield (index, *decode(dv))  # the server's own Bad: no value
        else:
            others.append((index, quality, timestamp(dv), raw))


class NotStored(ValueError):
    """A value of a type the data model has no place for (ByteString, structures)."""


Reading = tuple[str, float | None, str | None]
"""(element suffix: "" or "[i]", value, text) of one reading in `telemetry`."""


def readings(raw: Any, names: Mapping[int, str] | None = None) -> list[Reading]:
    """What a value that is not a plain number becomes (docs/data-model.md, "Values"): a
    string, LocalizedText, QualifiedName or Guid its text, a DateTime ISO 8601 UTC, an
    enumeration (`names`: its EnumStrings or EnumValues) its code and name, an array one
    reading per element."""
    if isinstance(raw, list):
        return [
            (f"[{i}]{suffix}", value, text)
            for i, item in enumerate(raw)
            for suffix, value, text in readings(item, names)
        ]
    if isinstance(raw, bool | int | float):
        text = names.get(int(raw)) if names is not None and not isinstance(raw, float) else None
        return [("", float(raw), text)]
    if isinstance(raw, str):
        return [("", None, raw)]
    if isinstance(raw, ua.LocalizedText):
        return [("", None, raw.Text or "")]
    if isinstance(raw, ua.QualifiedName):
        return [("", None, raw.Name or "")]
    if isinstance(raw, datetime):
        return [("", None, iso_utc(raw))]
    if isinstance(raw, uuid.UUID):
        return [("", None, str(raw))]
    raise NotStored(f"values of type {type(raw).__name__} are not stored")


def iso_utc(dt: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as `telemetry.text` holds a DateTime."""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def timestamp(dv: ua.DataValue) -> int:
    """Source time, else server time, else now (ns)."""
    dt = dv.SourceTimestamp or dv.ServerTimestamp
    return time.time_ns() if dt is None else datetime_ns(dt)


def decode(dv: ua.DataValue) -> tuple[float, Quality, int, str | None]:
    """Value, quality and timestamp (ns) of one DataValue, and the reason when it is BAD.

    Timestamps: source, else server, else now. A Bad status carries NaN (its value is not
    usable); an Uncertain one keeps its value. A value that is not a number becomes BAD here:
    `decoded` hands such values to `readings` instead.
    """
    ts = timestamp(dv)
    status = dv.StatusCode
    quality = quality_of(status)
    if quality is Quality.BAD and status is not None:  # None is Good
        return NAN, quality, ts, bad_status(status)
    raw = None if dv.Value is None else dv.Value.Value
    if isinstance(raw, int | float):  # bool is an int: True -> 1.0
        return float(raw), quality, ts, None
    return NAN, Quality.BAD, ts, f"a value of type {type(raw).__name__} is not a number"
