"""History backfill: after an outage, ask the server's HistoryRead for what the gap missed.

When a session comes back, each of its tags is read with HistoryRead (raw values) over the gap:
from shortly before the last publish answer before the loss (gap_start) to the reconnect.
Values come back with their source timestamps, so those already stored are written again at the
same series and time and overwrite (never doubled). The work is bounded so that a long outage
does not flood the PLC: the gap is cut to `max_span_s` (the older part counted as unfilled), at
most `nodes_per_call` tags and `values_per_call` values per request, and at most `calls_per_s`
requests a second. Tags the server does not historize (or refuses to read) are counted as
unfilled. One `events` point of kind `backfill` per outage says what was filled and what could
not be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asyncua import Client, ua
from pydantic import BaseModel, ConfigDict, Field

from connectors.opcua.datavalue import Other, Series, decoded
from core.sample import SampleBatch

_log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BackfillConfig(BaseModel):
    """The `backfill:` section of a `type: opcua` entry (README: History backfill)."""

    model_config = ConfigDict(extra="forbid")

    max_span_s: float = Field(default=3600.0, gt=0)  # the newest part of a longer gap only
    nodes_per_call: int = Field(default=50, gt=0)
    values_per_call: int = Field(default=1000, gt=0)  # per tag and request
    calls_per_s: float = Field(default=5.0, gt=0)


@dataclass(slots=True)
class Filled:
    """What one backfill did: values stored, tags that could not be read, seconds cut off."""

    values: int = 0
    unfilled_tags: int = 0
    cut_s: float = 0.0


OVERLAP_S = 1.0  # read this much before the last answer too, beyond one publishing interval


def gap_start(heard_ns: int, publishing_interval_ms: float) -> int:
    """Where a backfill starts: before the last answer heard from the server by a publishing
    interval (a value sampled just after the server built that answer waits for the next one,
    which was lost) and OVERLAP_S for clocks and delays. What was stored already is read again
    and overwrites itself at the same time: never doubled."""
    return heard_ns - round((publishing_interval_ms / 1000 + OVERLAP_S) * 1e9)


Item = tuple[int, ua.NodeId]  # a tag index and its resolved node
_Page = tuple[int, ua.NodeId, bytes]  # an item and where its answer goes on (b"": from start)
PutBatch = Callable[[SampleBatch], Awaitable[None]]


async def backfill(
    client: Client,
    config: BackfillConfig,
    items: Sequence[Item],
    series: Sequence[Series],
    gap: tuple[int, int],
    timeout_s: float,
    put: PutBatch,
) -> Filled:
    """Read the history of `items` over `gap` (ns since the epoch) and `put` it as samples."""
    start_ns, end_ns = gap
    filled = Filled()
    earliest = end_ns - round(config.max_span_s * 1e9)
    if start_ns < earliest:
        filled.cut_s = (earliest - start_ns) / 1e9
        start_ns = earliest
    pause_s = 1 / config.calls_per_s
    # pages by the start time of the request they belong to: one request reads tags of one
    # start; a page the server cut short comes next by its continuation point (same request
    # details), or, from a server that gives none, by a new start after its last value
    pending: dict[int, list[_Page]] = {start_ns: [(index, node, b"") for index, node in items]}
    while pending:
        since = min(pending)
        call = pending[since][: config.nodes_per_call]
        del pending[since][: config.nodes_per_call]
        if not pending[since]:
            del pending[since]
        async with asyncio.timeout(timeout_s):
            results = await client.uaclient.history_read(_request(call, since, end_ns, config))
        batch = SampleBatch()
        for (index, node, _), result in zip(call, results, strict=True):
            if not result.StatusCode.is_good():
                filled.unfilled_tags += 1
                _log.debug("backfill of %s refused: %s", node.to_string(), result.StatusCode.name)
                continue
            got = (result.HistoryData.DataValues or []) if result.HistoryData else []
            texts: list[Other] = []  # history of texts and arrays is not filled in (yet)
            rows = [row for row in decoded(((index, dv) for dv in got), texts) if row[3] >= since]
            if texts:  # counted as a tag that could not be filled, never dropped unsaid
                filled.unfilled_tags += 1
            for _, value, quality, ts, _ in rows:
                batch.add((series[index].key,), (value,), quality, ts)
            filled.values += len(rows)
            if result.ContinuationPoint:  # the rest of this request's answer
                pending.setdefault(since, []).append((index, node, result.ContinuationPoint))
            elif rows and len(got) >= config.values_per_call:  # cut short, no way to go on
                pending.setdefault(rows[-1][3] + 1, []).append((index, node, b""))  # next page
        await put(batch)
        if pending:
            await asyncio.sleep(pause_s)
    return filled


def _request(
    call: Sequence[_Page], since: int, end_ns: int, config: BackfillConfig
) -> ua.HistoryReadParameters:
    details = ua.ReadRawModifiedDetails(
        IsReadModified=False,
        StartTime=_datetime(since),
        EndTime=_datetime(end_ns),
        NumValuesPerNode=config.values_per_call,
        ReturnBounds=False,
    )
    return ua.HistoryReadParameters(
        HistoryReadDetails=details,
        TimestampsToReturn=ua.TimestampsToReturn.Both,
        # asyncua's default is True: "release the continuation points, return nothing", which a
        # server that follows Part 4 (node-opcua) obeys with BadContinuationPointInvalid
        ReleaseContinuationPoints=False,
        NodesToRead=[
            ua.HistoryReadValueId(NodeId=node, ContinuationPoint=point or None)
            for _, node, point in call
        ],
    )


def _datetime(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)
