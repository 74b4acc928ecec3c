"""The plain JSON layout of the unified namespace, for consumers that do not speak Sparkplug.

    uns/SITE/AREA/LINE/MACHINE/SIGNAL   retained, QoS 1: the latest value of one signal
        {"value": 71.9, "unit": "degC", "quality": "good", "timestamp": "2026-...Z",
         "ts_ns": 1796...}

Every batch publishes the newest sample of each signal in it; the full history of every sample
travels as Sparkplug DDATA. The other measurements of the data model (events, connector health)
travel as JSON lists on `shopfloor/v1/points/MEASUREMENT`, which `shopfloor ingest` reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from core.sample import Point, Sample
from core.units import unit_of
from uns.broker import clean_id

ROOT = "uns"
POINTS = "shopfloor/v1/points"

Message = tuple[str, bytes]


def latest(samples: Iterable[Sample], area: str) -> list[Message]:
    """One retained message per signal: the newest sample of each in the batch."""
    newest: dict[tuple[str, str, str, str], Sample] = {}
    for s in samples:
        key = (s.site, s.line, s.machine, s.signal)
        held = newest.get(key)
        if held is None or s.source_ts >= held.source_ts:
            newest[key] = s
    return [(signal_topic(s, area), _signal_payload(s)) for s in newest.values()]


def signal_topic(sample: Sample, area: str) -> str:
    levels = (sample.site, area, sample.line, sample.machine, sample.signal)
    return "/".join((ROOT, *(clean_id(level) for level in levels)))


def _signal_payload(s: Sample) -> bytes:
    stamp = datetime.fromtimestamp(s.source_ts / 1e9, UTC).isoformat(timespec="milliseconds")
    return json.dumps(
        {
            "value": s.value if math.isfinite(s.value) else None,
            "unit": unit_of(s.signal),
            "quality": s.quality.name.lower(),
            "timestamp": stamp.replace("+00:00", "Z"),
            "ts_ns": s.source_ts,
        },
        ensure_ascii=False,
    ).encode()


def points(batch: Sequence[Point]) -> list[Message]:
    """The points of a batch, one message per measurement."""
    by_measurement: dict[str, list[Point]] = {}
    for p in batch:
        by_measurement.setdefault(p.measurement, []).append(p)
    return [
        (
            f"{POINTS}/{clean_id(measurement)}",
            json.dumps(
                [{"tags": p.tags, "fields": p.fields, "ts": p.ts} for p in group],
                default=str,
            ).encode(),
        )
        for measurement, group in by_measurement.items()
    ]


def parse_points(measurement: str, payload: bytes) -> list[Point]:
    """The points of one message on `shopfloor/v1/points/MEASUREMENT`; ValueError if malformed."""
    try:
        items = json.loads(payload)
        return [Point(measurement, dict(i["tags"]), dict(i["fields"]), int(i["ts"])) for i in items]
    except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a list of points: {exc}") from None
