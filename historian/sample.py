"""The records that flow from connectors to the historian.

`Sample` is the hot-path record (one PLC tag reading); `Point` is the generic record for the
other measurements of the data model (events, connector health, anomalies, KPIs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Quality(IntEnum):
    """Tag quality as stored in the `quality` field of `telemetry` (DESIGN.md)."""

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
