"""`run_for` reports the failure of a part as itself, also from inside nested task groups (the
agent runs its inputs and writer in one of its own), so that a SpoolError or any other user error
is the promised one line and exit code 2, never a traceback of exception groups."""

from __future__ import annotations

import asyncio

import pytest

from delivery.spool import SpoolError
from shopfloor.options import run_for


async def _fails_deep_inside() -> None:
    async def broken() -> None:
        raise SpoolError("cannot read the spool folder /x: disk on fire")

    async with asyncio.TaskGroup() as outer:
        outer.create_task(asyncio.sleep(60))
        async with asyncio.TaskGroup() as inner:
            inner.create_task(broken())


async def test_a_failure_in_nested_task_groups_comes_out_as_itself() -> None:
    with pytest.raises(SpoolError, match="disk on fire"):
        await run_for(None, _fails_deep_inside(), asyncio.sleep(60))
