"""Waiting in tests for something that happens in another task or process, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

STEP_S = 0.02


async def eventually(condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    """Return once `condition()` is truthy; fail the test naming `what` after `timeout_s`."""
    for _ in range(int(timeout_s / STEP_S)):
        if condition():
            return
        await asyncio.sleep(STEP_S)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
