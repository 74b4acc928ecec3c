"""The sampling each tag is asked for, and whether a server can take it.

Sampling costs the server a read of the variable each interval, changed or not: 20,000 tags
every 250 ms is 80,000 samples a second, a full core of node-opcua, which then falls behind on
its own updates (docs/performance.md). So the default (`sampling_interval_ms` unset) asks for
report by exception (0) where the server says it supports it (a variable whose
MinimumSamplingInterval is 0: the server reports each change as it is written, and does nothing
between changes), and otherwise one sample per publishing interval, so that every message holds
a fresh value. A configuration that asks for more than the server announces it takes is warned
about once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from asyncua import Client, ua

from connectors.opcua.capacity import ServerLimits


async def by_exception(
    client: Client, items: Sequence[tuple[int, ua.NodeId]], *, timeout_s: float, batch: int
) -> set[int]:
    """The tag indexes whose variable the server reports by exception (MinimumSamplingInterval
    0); a variable that does not say, or a server that refuses the read, is sampled."""
    exception: set[int] = set()
    for start in range(0, len(items), batch):
        part = items[start : start + batch]
        try:
            async with asyncio.timeout(timeout_s):
                answers = await client.uaclient.read_attributes(
                    [nodeid for _, nodeid in part], ua.AttributeIds.MinimumSamplingInterval
                )
        except ua.UaStatusCodeError:
            continue
        for (index, _), answer in zip(part, answers, strict=True):
            good = answer.StatusCode is None or answer.StatusCode.is_good()
            if good and answer.Value is not None and answer.Value.Value == 0:
                exception.add(index)
    return exception


# Samples a second past which a server strains: node-opcua spends a full core on 80,000
# (20,000 tags every 250 ms, docs/performance.md); a PLC's OPC UA server takes far fewer.
SAMPLES_PER_S_BUDGET = 20_000


def sampling_warning(intervals: Sequence[float], limits: ServerLimits) -> str | None:
    """Why the sampling asked of a server is more than it can take, or None.

    `intervals` are the sampling intervals asked for, one per tag, in ms (0: report by
    exception, which costs the server nothing between changes). The server announces the
    fastest it samples (MinSupportedSampleRate); past that, and past a budget of samples a
    second that servers take without strain, the warning says what to change.
    """
    sampled = [ms for ms in intervals if ms > 0]
    rate = sum(1000 / ms for ms in sampled)
    fastest = limits.min_sampling_ms
    if fastest is not None and any(ms < fastest for ms in sampled):
        too_fast = sum(ms < fastest for ms in sampled)
        return (
            f"{too_fast} tags ask to be sampled more often than {1000 / fastest:g} times a "
            f"second, the most the server announces it takes (MinSupportedSampleRate "
            f"{fastest:g} ms): it samples them slower, and faster changes may be missed"
        )
    if rate > SAMPLES_PER_S_BUDGET:
        return (
            f"{len(sampled)} tags sampled as configured ask the server for {rate:,.0f} samples "
            f"a second, more than servers take without strain ({SAMPLES_PER_S_BUDGET:,}; "
            f"node-opcua spends a full core on 80,000): leave sampling_interval_ms unset "
            f"(report by exception where the server supports it) or sample less often"
        )
    return None
