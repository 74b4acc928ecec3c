"""The loss ledger: the spool's loss counters survive what its folder does not.

The spool keeps its counters (samples dropped, bytes unreadable) in `state.json`; a folder that
turned read-only cannot save them, and a restart would start them at 0 again, as if nothing
had been lost. The agent writes the counters into every `connector` point (`spool_dropped`,
`spool_unreadable_bytes`), which reach the historian from memory even while the folder fails.
At start they are read back from there, and the higher of each pair counts: the counters only
grow, so /health and the dashboards never return to 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from core.schema import CONNECTOR
from core.storage import Historian, HistorianError
from delivery.spool import SpoolStats

log = logging.getLogger(__name__)

# How far back the newest `connector` point is looked for: an hour first (cheap), then longer.
WINDOWS_S = (3600, 86_400, 30 * 86_400)
RECALL_TIMEOUT_S = 30.0
# `connector` fields that carry a spool loss counter, and the counter each one carries.
FIELDS = {"spool_dropped": "dropped_samples", "spool_unreadable_bytes": "unreadable_bytes"}


async def recalled(historian: Historian, connectors: Sequence[str]) -> dict[str, int]:
    """The highest loss counters the newest `connector` points of `connectors` carry; none
    if the historian has none or cannot be read (logged: the start goes on)."""
    try:
        async with asyncio.timeout(RECALL_TIMEOUT_S):
            return await _newest_counters(historian, connectors)
    except (HistorianError, TimeoutError, OSError) as exc:
        log.warning(
            "could not read the spool's loss counters back from %s (%s): they count from "
            "what the spool folder kept",
            historian.describe(),
            exc,
        )
        return {}


async def _newest_counters(historian: Historian, connectors: Sequence[str]) -> dict[str, int]:
    now = time.time_ns()
    counters: dict[str, int] = {}
    for name in connectors:
        for window_s in WINDOWS_S:
            points = await historian.points(
                CONNECTOR.name, tags={"connector": name}, start_ns=now - window_s * 10**9
            )
            if points:
                newest = max(points, key=lambda point: point.ts)
                for field, counter in FIELDS.items():
                    value = int(newest.fields.get(field, 0) or 0)
                    counters[counter] = max(counters.get(counter, 0), value)
                break
    return counters


async def remember_losses(
    stats: SpoolStats, historian: Historian, connectors: Sequence[str]
) -> None:
    """Raise the spool's loss counters to what the historian kept, where that is higher."""
    counters = await recalled(historian, connectors)
    before = stats.dropped_samples
    stats.remember(counters)
    if stats.dropped_samples > before:
        log.warning(
            "spool %s: %d samples were lost before this start (counted in the historian, "
            "not in the spool folder's state)",
            stats.folder or "(memory)",
            stats.dropped_samples,
        )
