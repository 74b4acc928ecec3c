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
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from historian.sample import Quality, Sample


class LatestValues:
    """Per tag index: the last sample handed on, and when (monotonic) it was a new point."""

    def __init__(self, max_ages_s: Sequence[float]) -> None:
        self._max_ages = list(max_ages_s)  # 0: no keep-alive for that tag
        self._last: list[Sample | None] = [None] * len(self._max_ages)
        self._recorded = [0.0] * len(self._max_ages)
        self._restamp: set[int] = set()

    def marked(self, index: int, marker: Sample) -> None:
        """A marker stamped with local time was handed on for the tag."""
        self._last[index] = marker
        self._recorded[index] = time.monotonic()
        self._restamp.add(index)

    def seen(self, index: int, sample: Sample, now: float) -> Sample:
        """The sample to hand on for a value from the server (`now`: time.monotonic())."""
        if self._restamp and index in self._restamp and sample.quality is not Quality.BAD:
            self._restamp.discard(index)
            sample = dataclasses.replace(sample, source_ts=time.time_ns())
        last = self._last[index]
        if last is None or last.source_ts != sample.source_ts or last.quality != sample.quality:
            self._recorded[index] = now  # a new point (a poll may return the same one again)
        self._last[index] = sample
        return sample

    def due(self, now: float) -> list[Sample]:
        """Copies, stamped now, of the samples older than their tag's max age."""
        again: list[Sample] = []
        ts = time.time_ns()
        for index, last in enumerate(self._last):
            max_age = self._max_ages[index]
            if last is not None and max_age and now - self._recorded[index] >= max_age:
                again.append(dataclasses.replace(last, source_ts=ts))
                self._last[index] = again[-1]
                self._recorded[index] = now
        return again

    def check_interval_s(self) -> float | None:
        """How often `due` should run: a tenth of the shortest max age (None: never)."""
        ages = [age for age in self._max_ages if age]
        return max(0.1, min(ages) / 10) if ages else None
