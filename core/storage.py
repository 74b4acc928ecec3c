"""The interfaces between the pipeline and where data goes: a `Sink` takes writes, a
`Historian` also reads back; and the one error every backend raises.

Delivery writes to a `Sink`; analytics and the CLI read a `Historian`. Which backend sits behind
one is chosen by a URL (see `historian.open_historian` and `uns.broker`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from core.sample import Point, Quality, Sample


class HistorianError(Exception):
    """A historian refused or failed a request; the message is fit for a user.

    `retryable` is True when the same request may succeed later without changing it (network
    failure, timeout, server error, and a historian set up wrong: see `retryable_status`) and
    False when the request itself is at fault (a malformed point, a field type conflict), so a
    spool knows whether to keep a batch or isolate and drop the bad records in it.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


# Statuses that no record causes and that an operator fixes: a bad token (401), a token
# without write permission (403), an unknown database or bucket (404). Every record would
# fail alike, so dropping them would lose all data until the fix: they wait in the spool.
CONFIGURATION_STATUSES = frozenset({401, 403, 404})


def retryable_status(status: int) -> bool:
    """Whether an HTTP error status means "keep the data and try again later"."""
    return status >= 500 or status == 429 or status in CONFIGURATION_STATUSES


@dataclass(frozen=True, slots=True)
class Reading:
    """The latest value of one telemetry series, as `shopfloor query` shows it."""

    site: str
    line: str
    machine: str
    signal: str
    value: float
    quality: Quality
    ts: int
    text: str | None = None  # a string value, a DateTime or an enumeration's name


class Sink(ABC):
    """Where the delivery pipeline writes samples and points: a historian, or a broker that
    keeps no history. Writes only; `Historian` adds the reads."""

    # How many writes the HistorianWriter may have outstanding at once (acknowledged in order).
    # One unless the backend takes concurrent requests and their order does not matter.
    writes_in_flight: int = 1

    @abstractmethod
    async def write_samples(self, samples: Sequence[Sample]) -> None:
        """Store telemetry samples; same series and timestamp overwrite (idempotent replays)."""

    @abstractmethod
    async def write_points(self, points: Sequence[Point]) -> None:
        """Store points of any measurement of the data model."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and files."""

    def describe(self) -> str:
        """Where the data goes, as a URL without secrets, for status displays and messages."""
        return repr(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Historian(Sink):
    """A sink that keeps history: read back in the query shapes analytics and dashboards use."""

    @abstractmethod
    async def latest(
        self,
        *,
        machine: str | None = None,
        signal: str | None = None,
        since_ns: int | None = None,
    ) -> list[Reading]:
        """The newest telemetry value per (site, line, machine, signal), filtered."""

    @abstractmethod
    async def points(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Point]:
        """All points of a measurement in [start_ns, end_ns), optionally filtered by tag values,
        ordered by time."""
