"""The records that flow from connectors to the historian.

`Sample` is the hot-path record (one PLC tag reading); `Point` is the generic record for the
other measurements of the data model (events, connector health, anomalies, KPIs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum

log = logging.getLogger(__name__)
_MAX_REPORTED = 10_000
_reported: set[tuple[str, str, str, str]] = set()


class Quality(IntEnum):
    """Tag quality as stored in the `quality` field of `telemetry` (the README's data model)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one PLC tag.

    `source_ts` is nanoseconds since the Unix epoch: the PLC's source timestamp where the
    protocol gives one (OPC UA), else the time the poll returned (Modbus).
    """

    line: str
    machine: str
    signal: str
    value: float
    quality: Quality
    source_ts: int
    site: str = "default"


@dataclass(frozen=True, slots=True)
class Point:
    """One point of any measurement: tags, fields and a timestamp in ns since the epoch."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | bool | str]
    ts: int


def quality_without_value(sample: Sample) -> Quality:
    """The quality to store for a sample whose value is NaN or infinite: bad, whatever the
    input said, since there is no number to store. The first such sample of a series that was
    not already marked bad is logged with its value, so that the reason is on record."""
    key = (sample.site, sample.line, sample.machine, sample.signal)
    if sample.quality is not Quality.BAD and key not in _reported:
        if len(_reported) < _MAX_REPORTED:
            _reported.add(key)
        log.warning(
            "%s/%s/%s: the PLC sent %s, which is not a number: stored as bad quality, no value",
            sample.line,
            sample.machine,
            sample.signal,
            sample.value,
        )
    return Quality.BAD
