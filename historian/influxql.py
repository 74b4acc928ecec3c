"""The InfluxQL the InfluxDB readers share (1.x directly, 2.x/3.x through the v1-compatible /query).

Builds the `latest` and `points` queries of `core.storage.Historian` and turns /query JSON
(requested chunked, with epoch=ns) into Readings and Points, typed by the data model.

`latest` returns the newest point of each telemetry series whatever its quality: a bad-quality
sample carries no `value` field, so its Reading has value NaN. That is the honest answer to
"what does the PLC say now"; the last good value is a `points` query away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.sample import Point
from core.schema import TELEMETRY, check_tags, coerce_field, measurement, telemetry_quality
from core.storage import HistorianError, Reading

_SERIES_TAGS = ",".join(f'"{tag}"' for tag in TELEMETRY.tags)


def quote_ident(name: str) -> str:
    """A double-quoted InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(text: str) -> str:
    """A single-quoted InfluxQL string literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "'" + escaped + "'"


def _where(tags: Mapping[str, str], start_ns: int | None = None, end_ns: int | None = None) -> str:
    conditions = [f"{quote_ident(k)} = {quote_literal(v)}" for k, v in tags.items()]
    if start_ns is not None:
        conditions.append(f"time >= {int(start_ns)}")
    if end_ns is not None:
        conditions.append(f"time < {int(end_ns)}")
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def latest_query(
    *, machine: str | None = None, signal: str | None = None, since_ns: int | None = None
) -> str:
    """Newest telemetry point per series (site, line, machine, signal)."""
    tags = {k: v for k, v in (("machine", machine), ("signal", signal)) if v is not None}
    fields = ",".join(map(quote_ident, TELEMETRY.fields))
    return (
        f"SELECT {fields} FROM {quote_ident(TELEMETRY.name)}{_where(tags, since_ns)}"
        f" GROUP BY {_SERIES_TAGS} ORDER BY time DESC LIMIT 1"
    )


def points_query(
    name: str,
    *,
    tags: Mapping[str, str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> str:
    """Every point of a measurement in [start_ns, end_ns), tags and fields as columns."""
    model = measurement(name)
    tags = tags or {}
    check_tags(model, tags)
    columns = ",".join(map(quote_ident, (*model.tags, *model.fields)))
    return f"SELECT {columns} FROM {quote_ident(name)}{_where(tags, start_ns, end_ns)}"


def statement_series(chunks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The series of the single statement of a chunked /query answer, chunks merged (a series
    split over chunks comes back whole); the server's error as HistorianError."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for chunk in chunks:
        if "error" in chunk:
            raise HistorianError(f"InfluxDB query failed: {chunk['error']}")
        for result in chunk.get("results", []):
            if "error" in result:
                raise HistorianError(f"InfluxDB query failed: {result['error']}")
            for series in result.get("series", []):
                key = (series.get("name", ""), tuple(sorted(series.get("tags", {}).items())))
                if key in merged:
                    merged[key]["values"].extend(series["values"])
                else:
                    merged[key] = series
    return list(merged.values())


def parse_latest(chunks: Sequence[Mapping[str, Any]]) -> list[Reading]:
    """Readings from the answer to `latest_query`, sorted by series."""
    readings = []
    for series in statement_series(chunks):
        tags = series.get("tags", {})
        ts, value, quality, text = series["values"][0]
        readings.append(
            Reading(
                site=tags.get("site", ""),
                line=tags.get("line", ""),
                machine=tags.get("machine", ""),
                signal=tags.get("signal", ""),
                value=math.nan if value is None else float(value),
                quality=telemetry_quality(quality),
                ts=ts,
                text=text,
            )
        )
    readings.sort(key=lambda r: (r.site, r.line, r.machine, r.signal))
    return readings


def parse_points(name: str, chunks: Sequence[Mapping[str, Any]]) -> list[Point]:
    """Points from the answer to `points_query`, ordered by time then tags.

    An absent tag (null) is left out of `tags`, a null field out of `fields`.
    """
    model = measurement(name)
    kinds = [model.fields[f] for f in model.fields]
    n_tags = len(model.tags)
    points = []
    for series in statement_series(chunks):
        for row in series["values"]:
            tag_values = row[1 : n_tags + 1]
            field_values = row[n_tags + 1 :]
            points.append(
                Point(
                    measurement=name,
                    tags={k: v for k, v in zip(model.tags, tag_values, strict=True) if v},
                    fields={
                        k: coerce_field(kind, v)
                        for k, kind, v in zip(model.fields, kinds, field_values, strict=True)
                        if v is not None
                    },
                    ts=row[0],
                )
            )
    points.sort(key=lambda p: (p.ts, *(p.tags.get(t, "") for t in model.tags)))
    return points
