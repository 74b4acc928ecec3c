"""What each tag last recorded, so that its current value is always the latest point stored.

A real OPC UA server changes a variable's source timestamp only when its value changes, so two
rules keep the historian's "latest" right without ever comparing the server's clock with ours:

- After a marker the connector stamped itself with local time (connection lost, node unknown),
  the tag's next usable value is stamped with local time too: its source timestamp may be older
  than the marker (a constant tag's is hours old), and the marker would stay "latest" forever.
  Later changes carry the server's source timestamp again.
- Report-by-exception sends nothing while a value holds still; a tag whose last point is older
  than its `max_age_s` (measured on our monotonic clock) is recorded again, stamped now, so that
  it shows in every time window (keep-alive).

The last point of each tag is kept as columns (value, quality, timestamp), not as a Sample per
tag: this runs for every notification, and at 20,000 tags the objects would be resident.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Sequence

from core.sample import Quality, Sample, SeriesKey

_NONE = -1  # timestamp of a tag with no point yet


class LatestValues:
    """Per tag index: the last point handed on, and when (monotonic) it was a new point."""

    def __init__(self, keys: Sequence[SeriesKey], max_ages_s: Sequence[float]) -> None:
        self._keys = keys
        self._max_ages = array("d", max_ages_s)  # 0: no keep-alive for that tag
        self._values = array("d", bytes(8 * len(keys)))
        self._qualities = bytearray(len(keys))
        self._stamps = [_NONE] * len(keys)
        self._recorded = array("d", bytes(8 * len(keys)))
        self._restamp: set[int] = set()

    def marked(self, index: int, marker: Sample) -> None:
        """A marker stamped with local time was handed on for the tag."""
        self._store(index, marker.value, marker.quality, marker.source_ts)
        self._recorded[index] = time.monotonic()
        self._restamp.add(index)

    def seen(self, index: int, value: float, quality: Quality, ts: int, now: float) -> int:
        """The timestamp to hand on for a value from the server (`now`: time.monotonic())."""
        if self._restamp and index in self._restamp and quality is not Quality.BAD:
            self._restamp.discard(index)
            ts = time.time_ns()
        if self._stamps[index] != ts or self._qualities[index] != quality:
            self._recorded[index] = now  # a new point (a poll may return the same one again)
        self._store(index, value, quality, ts)
        return ts

    def not_numeric(self, index: int, quality: Quality, ts: int) -> int:
        """As `seen`, for a value kept out of these columns (a text, an array, an enumeration):
        its tag gets no keep-alive, since there is no number to record again."""
        ts = self.seen(index, float("nan"), quality, ts, time.monotonic())
        self._stamps[index] = _NONE
        return ts

    def _store(self, index: int, value: float, quality: Quality, ts: int) -> None:
        self._values[index] = value
        self._qualities[index] = quality
        self._stamps[index] = ts

    def due(self, now: float) -> list[Sample]:
        """Copies, stamped now, of the points older than their tag's max age."""
        again: list[Sample] = []
        ts = time.time_ns()
        for index, stamp in enumerate(self._stamps):
            max_age = self._max_ages[index]
            if stamp != _NONE and max_age and now - self._recorded[index] >= max_age:
                site, line, machine, signal = self._keys[index]
                quality = Quality(self._qualities[index])
                again.append(Sample(line, machine, signal, self._values[index], quality, ts, site))
                self._stamps[index] = ts
                self._recorded[index] = now
        return again

    def check_interval_s(self) -> float | None:
        """How often `due` should run: a tenth of the shortest max age (None: never)."""
        ages = [age for age in self._max_ages if age]
        return max(0.1, min(ages) / 10) if ages else None
