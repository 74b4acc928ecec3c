"""Modbus devices as they are in the field: the connector and the commissioning tools against
`QuirkServer`, a raw-socket Modbus TCP server (nothing from pymodbus or the simulator) that
closes after each answer, mixes up transaction ids, answers late, refuses large reads, serves
one connection at a time or sends malformed answers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from connectors.modbus import Config, ModbusInput, build
from connectors.modbus.check import check
from connectors.modbus.config import Table
from connectors.modbus.probe import ProbeError, read_block
from core.sample import Quality, Sample
from tests.connectors.modbus.quirk_server import Quirks, QuirkServer, register

pytestmark = pytest.mark.timeout(60)


def _tags(count: int) -> list[dict[str, Any]]:
    return [
        {"signal": f"r{a}", "table": "holding", "address": a, "type": "uint16"}
        for a in range(count)
    ]


def make_input(port: int, units: Sequence[int] = (1,), tags: int = 4, **entry: Any) -> ModbusInput:
    config = {
        "type": "modbus",
        "name": "plc",
        "url": f"modbus://127.0.0.1:{port}",
        "timeout_s": 1.0,
        "poll_interval_s": 0.05,
        "reconnect": {"min_s": 0.5, "max_s": 10.0},
        "devices": [{"unit": u, "machine": f"m{u}", "tags": _tags(tags)} for u in units],
        **entry,
    }
    return build(Config.model_validate(config), site="s", line="l")


@contextlib.asynccontextmanager
async def running(source: ModbusInput) -> AsyncIterator[list[tuple[float, list[Sample]]]]:
    """The batches `source` emits, each with the loop time it arrived."""
    batches: list[tuple[float, list[Sample]]] = []
    loop = asyncio.get_running_loop()

    async def emit(samples: Sequence[Sample]) -> None:
        batches.append((loop.time(), list(samples)))

    task = asyncio.create_task(source.run(emit))
    try:
        yield batches
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def good_times(batches: list[tuple[float, list[Sample]]], machine: str) -> list[float]:
    """When `machine` delivered a good r0 with the value the device holds."""
    unit = int(machine[1:])
    return [
        at
        for at, batch in batches
        for s in batch
        if s.machine == machine
        and s.signal == "r0"
        and s.quality is Quality.GOOD
        and s.value == register(unit, 0)
    ]


def largest_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=math.inf)


async def test_a_device_that_closes_after_each_answer_is_served_every_cycle() -> None:
    async with QuirkServer(Quirks(close_after_answer=True)) as server:
        source = make_input(server.port)
        async with running(source) as batches:
            await asyncio.sleep(3.0)
        good = good_times(batches, "m1")
        assert len(good) >= 40, f"{len(good)} good cycles of ~60 in 3 s"
        assert largest_gap(good) < 0.3
        assert source.stats.reconnects == 0  # a close after an answer is no outage
        assert source.stats.connected


async def test_close_after_answer_set_in_config_serves_several_units() -> None:
    async with QuirkServer(Quirks(close_after_answer=True)) as server:
        source = make_input(server.port, units=(1, 2, 3), close_after_answer=True)
        async with running(source) as batches:
            await asyncio.sleep(3.0)
        for machine in ("m1", "m2", "m3"):
            good = good_times(batches, machine)
            assert len(good) >= 25, f"{machine}: {len(good)} good cycles in 3 s"
        assert source.stats.reconnects == 0


async def test_wrong_transaction_ids_are_counted_and_no_unit_stalls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connectors.modbus")
    async with QuirkServer(Quirks(wrong_tid_every=20)) as server:
        source = make_input(server.port, units=(1, 2, 3))
        async with running(source) as batches:
            await asyncio.sleep(3.0)
        for machine in ("m1", "m2", "m3"):
            good = good_times(batches, machine)
            assert len(good) >= 45, f"{machine}: {len(good)} good cycles of ~60 in 3 s"
            # a stall waits out the 1 s timeout; a busy machine delays a cycle by less
            assert largest_gap(good) < 0.6, f"{machine} stalled {largest_gap(good):.2f} s"
        wrong = server.answers // 20
        assert source.wrong_ids >= wrong - 1 and source.wrong_ids > 0
        assert "wrong transaction id" in caplog.text
        assert source.stats.reconnects == 0


async def test_a_slow_device_is_slow_not_down() -> None:
    """Every second request is answered 0.6 s late against a 0.3 s timeout: after the first
    late answer the timeout grows to fit the device, so it is not taken for down again."""
    async with QuirkServer(Quirks(late_every=2, late_s=0.6)) as server:
        source = make_input(server.port, timeout_s=0.3, poll_interval_s=0.1)
        async with running(source) as batches:
            await asyncio.sleep(5.0)
        assert source.stats.reconnects == 0
        assert server.connections == 1
        settled = [(at, b) for at, b in batches if at > batches[0][0] + 2.0]
        bad = [s for _, b in settled for s in b if s.quality is not Quality.GOOD]
        assert settled and not bad, f"{len(bad)} bad samples once the timeout fit the device"
        assert len(good_times(batches, "m1")) >= 8


async def test_exception_03_on_a_large_read_splits_it_and_names_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="connectors.modbus")
    async with QuirkServer(Quirks(max_registers=32)) as server:
        source = make_input(server.port, tags=100)
        assert [r.count for r in source.requests] == [100]
        async with running(source) as batches:
            await asyncio.sleep(1.0)
        last = {s.signal: s for s in batches[-1][1]}
        assert len(last) == 100
        assert all(s.quality is Quality.GOOD for s in last.values())
        assert last["r99"].value == register(1, 99)
        assert max(r.count for r in source.requests) <= 32  # remembered
        recent = server.requests[-len(source.requests) :]
        assert all(count <= 32 for *_, count in recent)
        assert "max_registers_per_read" in caplog.text


def check_config(port: int, timeout_s: float = 1.0) -> Config:
    return Config.model_validate(
        {
            "type": "modbus",
            "name": "plc",
            "url": f"modbus://127.0.0.1:{port}",
            "timeout_s": timeout_s,
            "devices": [{"unit": 1, "machine": "m1", "tags": _tags(4)}],
        }
    )


async def test_check_and_probe_beside_a_connection_say_the_device_refused_them() -> None:
    async with QuirkServer(Quirks(one_connection=True)) as server:
        _, holder = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            await asyncio.sleep(0.1)
            result = await check(check_config(server.port))
            problems = {tag.problem for tag in result.tags}
            with pytest.raises(ProbeError) as probed:
                await read_block(
                    f"modbus://127.0.0.1:{server.port}",
                    unit=1,
                    table=Table.HOLDING,
                    address=0,
                    count=4,
                    timeout_s=1.0,
                )
        finally:
            holder.close()
    for message in (*problems, str(probed.value)):
        assert "timeout" not in message and "did not answer" not in message, message
        assert "closed the connection" in message and "one connection" in message, message
    assert server.turned_away >= 2


async def test_check_and_probe_report_a_malformed_answer_as_such(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with QuirkServer(Quirks(malformed=True)) as server:
        result = await check(check_config(server.port))
        with pytest.raises(ProbeError) as probed:
            await read_block(
                f"modbus://127.0.0.1:{server.port}",
                unit=1,
                table=Table.HOLDING,
                address=0,
                count=4,
                timeout_s=1.0,
            )
    for message in (*(tag.problem for tag in result.tags), str(probed.value)):
        assert "malformed answer" in message and "byte count 28" in message, message
        assert "timeout" not in message
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_malformed_answer_marks_its_tags_bad_and_says_why() -> None:
    async with QuirkServer(Quirks(malformed=True)) as server:
        source = make_input(server.port)
        async with running(source) as batches:
            await asyncio.sleep(0.5)
        assert batches and all(s.quality is Quality.BAD for _, b in batches for s in b)
        assert "malformed answer" in source.stats.last_error
        assert source.stats.reconnects == 0
