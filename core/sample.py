"""The records that flow from connectors to the historian.

`SampleBatch` is the hot-path record: one poll cycle's readings as columns (the series once,
values and qualities as arrays, one timestamp per read), so that decode, spool and line protocol
do per-block work instead of per-sample work. `Sample` is the public record for code that wants
one tag reading at a time (a batch reads as a sequence of them); `Point` is the generic record
for the other measurements of the data model (events, connector health, anomalies, KPIs).
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import accumulate
from typing import overload

log = logging.getLogger(__name__)
_MAX_REPORTED = 10_000
_reported: set[tuple[str, str, str, str]] = set()


class Quality(IntEnum):
    """Tag quality as stored in the `quality` field of `telemetry` (docs/data-model.md)."""

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
    fields: Mapping[str, float | int | bool | str]  # read-only: a point is a value
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


SeriesKey = tuple[str, str, str, str]  # (site, line, machine, signal)


class Series(tuple[SeriesKey, ...]):
    """The series of one read, as a tuple that computes its hash once: the hot path keys
    dicts by a read's series (spool groups, line-protocol prefixes, live status), and a plain
    tuple of hundreds of keys is hashed afresh, key by key, on every lookup."""

    _hash: int

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            self._hash = tuple.__hash__(self)
            return self._hash


Run = tuple[tuple[SeriesKey, ...], int]  # the series of one read and its timestamp (ns)


class SampleBatch(Sequence[Sample]):
    """Samples as columns: `runs` of (series, timestamp), one per read, with the values
    (float64) and qualities (one byte each) of all runs end to end.

    It is a `Sequence[Sample]` (a `Sample` is made only when one is asked for), and `+=`
    appends another batch column-wise or any samples one by one.
    """

    __slots__ = ("_ends", "qualities", "runs", "values")

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.values = array("d")
        self.qualities = bytearray()
        self._ends: list[int] | None = None  # cumulative run lengths, built on first index

    @classmethod
    def of(
        cls, series: tuple[SeriesKey, ...], values: Iterable[float], quality: Quality, ts: int
    ) -> SampleBatch:
        """One read: every series with its value, all of one quality and timestamp."""
        batch = cls()
        batch.add(series, values, quality, ts)
        return batch

    def add(
        self, series: tuple[SeriesKey, ...], values: Iterable[float], quality: Quality, ts: int
    ) -> None:
        """Append one read (values in the order of `series`)."""
        start = len(self.values)
        astype = getattr(values, "astype", None)
        if astype is not None:  # a numpy array (the Modbus block decoder's): its float64 bytes
            self.values.frombytes(astype("float64", copy=False).tobytes())
        else:
            self.values.extend(values)
        if len(self.values) - start != len(series):
            del self.values[start:]
            raise ValueError(f"{len(series)} series but another number of values")
        self.qualities += bytes((quality,)) * len(series)
        self.runs.append((series, ts))
        self._ends = None

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Sample]:
        values, qualities, index = self.values, self.qualities, 0
        for series, ts in self.runs:
            for site, line, machine, signal in series:
                yield Sample(
                    line, machine, signal, values[index], _QUALITIES[qualities[index]], ts, site
                )
                index += 1

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> SampleBatch: ...
    def __getitem__(self, index: int | slice) -> Sample | SampleBatch:
        if isinstance(index, slice):
            return self._slice(*index.indices(len(self)), index.step)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("SampleBatch index out of range")
        run = bisect_right(self._run_ends(), index)
        series, ts = self.runs[run]
        site, line, machine, signal = series[index - self._run_start(run)]
        quality = _QUALITIES[self.qualities[index]]
        return Sample(line, machine, signal, self.values[index], quality, ts, site)

    def _run_ends(self) -> list[int]:
        if self._ends is None:
            self._ends = list(accumulate(len(series) for series, _ in self.runs))
        return self._ends

    def _run_start(self, run: int) -> int:
        return self._run_ends()[run - 1] if run else 0

    def _slice(self, start: int, stop: int, _: int, step: int | None) -> SampleBatch:
        if step not in (None, 1):
            raise ValueError("a SampleBatch slices only with step 1")
        part = SampleBatch()
        if start >= stop:
            return part
        ends = self._run_ends()
        run = bisect_right(ends, start)
        while run < len(self.runs) and self._run_start(run) < stop:
            series, ts = self.runs[run]
            first = self._run_start(run)
            cut = series[max(start - first, 0) : stop - first]
            part.runs.append((cut, ts))
            run += 1
        part.values = self.values[start:stop]
        part.qualities = self.qualities[start:stop]
        return part

    def __iadd__(self, other: Iterable[Sample]) -> SampleBatch:
        if isinstance(other, SampleBatch):
            self.runs += other.runs
            self.values += other.values
            self.qualities += other.qualities
            self._ends = None
            return self
        for s in other:
            self.add(((s.site, s.line, s.machine, s.signal),), (s.value,), s.quality, s.source_ts)
        return self

    def __add__(self, other: Iterable[Sample]) -> SampleBatch:
        joined = SampleBatch()
        joined += self
        joined += other
        return joined

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    # unhashable (mutable); typeshed types object.__hash__ as a method, which None is not
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SampleBatch({len(self)} samples in {len(self.runs)} reads)"


_QUALITIES = tuple(Quality)


def as_batch(samples: Iterable[Sample]) -> SampleBatch:
    """`samples` as a SampleBatch (the same object if it is one)."""
    if isinstance(samples, SampleBatch):
        return samples
    batch = SampleBatch()
    batch += samples
    return batch
