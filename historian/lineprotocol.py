"""InfluxDB line protocol for Samples (the hot path) and Points.

Escaping follows what InfluxDB 1.x's parser actually does (checked against influxd 1.6.7):
measurement names escape commas and spaces; tag keys, tag values and field keys escape commas,
equals signs and spaces; string field values escape double quotes and backslashes. A backslash
elsewhere is literal, so a name with a backslash right before one of its escapable characters or
at its end, or with a newline, cannot be written faithfully and is refused. Empty tag values are
left out (line protocol has no empty tag; it reads back as an absent tag).

Line protocol has no NaN or infinity: a Sample whose value is not finite (the PLC answered badly,
or sent NaN or infinity) is written with only its `quality` field, always bad (never good with no
value), and non-finite float fields of a Point are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from core.sample import Point, Quality, Sample, SampleBatch, SeriesKey, quality_without_value
from core.schema import KEY_SPECIALS, TELEMETRY, name_problem, typed_fields
from core.storage import HistorianError

_MEASUREMENT_SPECIALS = ", "
_MAX_CACHED_SERIES = 100_000

# Telemetry line prefix ("telemetry,line=..,machine=..,signal=..,site=.. ") per series key.
_telemetry_prefixes: dict[tuple[str, str, str, str], str] = {}
# "prefix value=" of every series of a read, per series tuple of a read (SampleBatch runs).
_run_prefixes: dict[tuple[SeriesKey, ...], tuple[str, ...]] = {}
_MAX_CACHED_RUNS = 10_000
_VALUE = "value="


def _escape(text: str, specials: str) -> str:
    if name_problem(text) is not None:
        raise HistorianError(f"cannot be written as InfluxDB line protocol: {text!r}")
    for char in specials:
        if char in text:
            text = text.replace(char, "\\" + char)
    return text


def escape_measurement(name: str) -> str:
    """A measurement name as line protocol needs it."""
    return _escape(name, _MEASUREMENT_SPECIALS)


def escape_key(text: str) -> str:
    """A tag key, tag value or field key as line protocol needs it."""
    return _escape(text, KEY_SPECIALS)


def quote_string(text: str) -> str:
    """A string field value, quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def series_key(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """`measurement,k=v,...` with tags sorted by key (InfluxDB's own order) and empty values
    left out."""
    parts = [escape_measurement(measurement)]
    parts.extend(f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags) if v)
    return ",".join(parts)


def _series_prefix(key: tuple[str, str, str, str]) -> str:
    return series_key(TELEMETRY.name, zip(TELEMETRY.tags, key, strict=True)) + " "


def _telemetry_prefix(key: tuple[str, str, str, str]) -> str:
    if len(_telemetry_prefixes) >= _MAX_CACHED_SERIES:
        _telemetry_prefixes.clear()
    prefix = _telemetry_prefixes[key] = _series_prefix(key)
    return prefix


def format_samples(samples: Sequence[Sample]) -> str:
    """Samples as newline-separated telemetry lines (ns timestamps), one string per batch.

    The series part of each line is escaped once per series and cached, so the per-sample
    work is one dict lookup and one f-string; a SampleBatch costs one lookup per read.
    """
    if isinstance(samples, SampleBatch):
        return _format_batch(samples)
    prefixes = _telemetry_prefixes
    lines: list[str] = []
    append = lines.append
    for s in samples:
        key = (s.site, s.line, s.machine, s.signal)
        prefix = prefixes.get(key) or _telemetry_prefix(key)
        value = s.value
        if value - value == 0:  # false for NaN and +-inf, without a function call
            append(f"{prefix}value={value},quality={s.quality:d}i {s.source_ts}")
        else:
            append(f"{prefix}quality={quality_without_value(s):d}i {s.source_ts}")
    return "\n".join(lines)


def check_samples(samples: Sequence[Sample]) -> None:
    """Raise HistorianError now if a sample's series cannot be written as line protocol (a
    name holding a character it cannot carry), as `format_samples` would: the one way samples
    fail to format, checked by building (and caching) their prefixes, so that a large batch
    can be formatted a chunk at a time as it is sent, and still fail before anything is."""
    if isinstance(samples, SampleBatch):
        for series, _ in samples.runs:
            _prefixes_of(series)
        return
    prefixes = _telemetry_prefixes
    for s in samples:
        key = (s.site, s.line, s.machine, s.signal)
        if key not in prefixes:
            _telemetry_prefix(key)


def _prefixes_of(series: tuple[SeriesKey, ...]) -> tuple[str, ...]:
    found = _run_prefixes.get(series)
    if found is None:
        if len(_run_prefixes) >= _MAX_CACHED_RUNS:
            _run_prefixes.clear()
        # not through the per-sample cache: a read's prefixes are kept once, not twice
        found = _run_prefixes[series] = tuple(_series_prefix(key) + _VALUE for key in series)
    return found


def _format_unvalued(
    batch: SampleBatch, series: tuple[SeriesKey, ...], ts: int, start: int, end: int
) -> str:
    """A read holding values that are not finite. A failed read (all bad, no value: a device
    that did not answer) is written from the read's own prefixes, so that an outage of many
    devices keeps no prefix per series; anything else takes the per-sample path, which also
    logs why a good value turned bad."""
    bad = batch.qualities.count(Quality.BAD, start, end) == end - start
    if bad and not any(map(math.isfinite, batch.values[start:end])):
        rest = f"quality={Quality.BAD:d}i {ts}"
        return "\n".join(prefix[: -len(_VALUE)] + rest for prefix in _prefixes_of(series))
    return format_samples(list(batch[start:end]))


def _format_batch(batch: SampleBatch) -> str:
    """The lines of a SampleBatch straight from its columns: per read, the prefixes of its
    series come from one cache lookup and its timestamp is formatted once; a read of one
    quality (the usual case) is one join of prefix + value with the rest of the line between.
    A read holding a value that is not finite is written as `_format_unvalued` says."""
    lines: list[str] = []
    values, qualities, start = batch.values, batch.qualities, 0
    for series, ts in batch.runs:
        end = start + len(series)
        run_values = values[start:end]
        total = sum(run_values)  # NaN or +-inf if any value is (or, harmlessly, on overflow)
        if total - total != 0:
            lines.append(_format_unvalued(batch, series, ts, start, end))
        elif qualities.count(qualities[start], start, end) == end - start:
            rest = f",quality={qualities[start]}i {ts}\n"
            valued = map(str.__add__, _prefixes_of(series), map(repr, run_values))
            lines.append(rest.join(valued) + rest[:-1])
        else:
            tail = f"i {ts}"
            lines += map(
                "{}{},quality={}{}".format,
                _prefixes_of(series),
                run_values,
                qualities[start:end],
                (tail,) * len(series),
            )
        start = end
    return "\n".join(lines)


def _format_field(value: float | int | bool | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return quote_string(value)


def format_point(point: Point) -> str | None:
    """One line for a point of the data model, each field written with its model type (InfluxDB
    refuses a float field that arrives as an integer later); None if no field is left to write."""
    fields = typed_fields(point)
    if not fields:
        return None
    field_set = ",".join(f"{escape_key(k)}={_format_field(v)}" for k, v in fields.items())
    return f"{series_key(point.measurement, point.tags.items())} {field_set} {point.ts}"


def format_points(points: Sequence[Point]) -> str:
    """Points as newline-separated lines; points left with no field are skipped."""
    return "\n".join(line for line in map(format_point, points) if line is not None)
