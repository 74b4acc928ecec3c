"""Modbus alarm bits and words into `events` (kind `alarm`), against the C libmodbus server
(a stack we did not write) and the simulator, through `shopfloor connect`'s pipeline into a
real historian (SQLite, InfluxDB): a bit set is an active event, cleared a clear one, a
restarted or reconnected connector sends what is active, and an alarm that cannot be read is
neither raised nor cleared."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from connectors.modbus import Config, ModbusInput, check
from connectors.modbus.plan import ReadRequest
from core.sample import Point
from core.schema import EVENTS, EventKind
from core.severity import SeverityLevel
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import Historian, open_historian
from plc_sim.modbus_server import ModbusServer
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from shopfloor.simconfig import sim_connectors
from testbed.influxd import free_port
from tests.connectors.opcua.opcua_testplc import Collector
from tests.eventually import eventually
from tests.second_stack import Running

pytestmark = pytest.mark.timeout(90)
WAIT_S = 15
TAGS = [
    {"signal": "count", "table": "holding", "address": 0, "type": "uint16"},
    {"signal": "level", "table": "holding", "address": 1, "type": "float32"},
    {"signal": "big", "table": "holding", "address": 3, "type": "uint32"},
    {"signal": "minus", "table": "holding", "address": 5, "type": "int16"},
]
ALARMS = [
    {
        "condition": "Overheat",
        "table": "holding",
        "address": 6,
        "bit": 3,
        "severity": 700,
        "message": "motor winding over 120 °C",
    },
    {"condition": "DriveFault", "table": "holding", "address": 6, "mask": 0x00F0, "severity": 900},
    {"condition": "Manual", "table": "holding", "address": 7, "equals": 2, "severity": 200},
    {"condition": "EStop", "table": "coil", "address": 0, "severity": 1000, "source": "panel"},
]


def config(url: str, alarms: list[dict[str, Any]] = ALARMS, **device: Any) -> Config:
    return Config.model_validate(
        {
            "type": "modbus",
            "name": "drive",
            "url": url,
            "poll_interval_s": 0.1,
            "timeout_s": 1,
            "reconnect": {"min_s": 0.1, "max_s": 0.3},
            "devices": [
                {"unit": 1, "machine": "conveyor", "tags": TAGS, "alarms": alarms, **device}
            ],
        }
    )


async def write(
    url: str, *, register: tuple[int, int] | None = None, coil: bool | None = None
) -> None:
    """What the PLC's program does: set an alarm word or bit."""
    host, port = url.removeprefix("modbus://").split(":")
    client = AsyncModbusTcpClient(host, port=int(port), timeout=2)
    try:
        assert await client.connect()
        if register is not None:
            await client.write_register(register[0], register[1], device_id=1)
        if coil is not None:
            await client.write_coil(0, coil, device_id=1)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def connect(
    url: str, historian: Historian, spool: Path, settings: Config | None = None
) -> AsyncIterator[ModbusInput]:
    """`shopfloor connect`: the input, the agent, the writer and its spool."""
    source = ModbusInput(settings or config(url), site="plant", line="line1")
    writer = HistorianWriter(historian, spool=Spool(spool), flush_interval_s=0.05)
    agent = asyncio.create_task(Agent([source], writer, health_interval_s=1).run())
    try:
        await eventually(lambda: source.stats.connected, "connected", WAIT_S)
        yield source
    finally:
        agent.cancel()
        await asyncio.gather(agent, return_exceptions=True)


async def stored(historian: Historian, condition: str) -> list[Point]:
    points = await historian.points(EVENTS.name, tags={"kind": EventKind.ALARM.value})
    return sorted((p for p in points if p.fields["condition"] == condition), key=lambda p: p.ts)


async def until_stored(historian: Historian, condition: str, count: int) -> list[Point]:
    async with asyncio.timeout(WAIT_S):
        while len(points := await stored(historian, condition)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # a query: there is no event to wait on
    return points


async def test_bits_and_words_raise_and_clear_alarms_in_the_historian(
    device: Running, tmp_path: Path
) -> None:
    url = device.url
    async with (
        open_historian(f"sqlite:{tmp_path / 'h.db'}") as historian,
        connect(url, historian, tmp_path / "spool") as source,
    ):
        # the alarm words next to the tag cost no read of their own: holding 0..7, coil 0
        assert [(r.table.value, r.address, r.count) for r in source.requests] == [
            ("holding", 0, 8),
            ("coil", 0, 1),
        ]
        await asyncio.sleep(0.5)
        assert not await historian.points(EVENTS.name)  # nothing active: nothing said

        await write(url, register=(6, 0x0008))  # bit 3
        (raised,) = await until_stored(historian, "Overheat", 1)
        await write(url, register=(6, 0x0000))
        raised, cleared = await until_stored(historian, "Overheat", 2)

        await write(url, register=(6, 0x0020))  # inside the mask 0x00F0
        await write(url, register=(7, 2))  # the word equals 2
        (fault,) = await until_stored(historian, "DriveFault", 1)
        (manual,) = await until_stored(historian, "Manual", 1)
        await write(url, register=(7, 3))  # any other value: not manual
        await until_stored(historian, "Manual", 2)
    assert raised.tags == {
        "site": "plant",
        "line": "line1",
        "machine": "conveyor",
        "kind": EventKind.ALARM.value,
    }
    assert raised.fields == {
        "text": "motor winding over 120 °C",
        "active": True,
        "acked": False,  # Modbus has no acknowledgement: nobody acknowledged it
        "confirmed": False,
        "retain": True,
        "comment": "",
        "source": "conveyor",
        "condition": "Overheat",
        "condition_id": "1/holding/6.3",
        "alarm_severity": 700,
        "severity_level": SeverityLevel.HIGH,
        "event_id": raised.fields["event_id"],
    }
    assert cleared.fields["active"] is False and cleared.ts > raised.ts
    assert cleared.fields["event_id"] != raised.fields["event_id"]
    assert fault.fields["active"] is True and fault.fields["condition_id"] == "1/holding/6&0x00F0"
    assert fault.fields["severity_level"] == SeverityLevel.CRITICAL
    assert manual.fields["active"] is True and manual.fields["text"] == "Manual"
    assert cleared.fields["retain"] is False and cleared.fields["acked"] is False


async def test_a_restarted_connector_sends_what_is_active(device: Running, tmp_path: Path) -> None:
    url = device.url
    async with open_historian(f"sqlite:{tmp_path / 'h.db'}") as historian:
        async with connect(url, historian, tmp_path / "spool"):
            await write(url, coil=True)
            (first,) = await until_stored(historian, "EStop", 1)
        # while no connector ran, nothing changed: only the restart's refresh tells it
        async with connect(url, historian, tmp_path / "spool"):
            first, again = await until_stored(historian, "EStop", 2)
            await asyncio.sleep(0.5)  # and only once
            assert len(await stored(historian, "EStop")) == 2
            assert not await stored(historian, "Overheat")  # inactive ones: nothing to say
            await write(url, coil=False)
            *_, cleared = await until_stored(historian, "EStop", 3)
    assert first.fields["active"] is again.fields["active"] is True
    assert again.fields["source"] == "panel"
    assert again.fields["severity_level"] == SeverityLevel.CRITICAL
    assert cleared.fields["active"] is False


async def test_an_unreadable_alarm_is_counted_and_logged_once_never_cleared(
    device: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Holding 20 does not exist on the device; read across the hole with the tags and the
    other alarms (max_gap), the device refuses the whole read, which is then split: the
    readable alarms go on, the ghost is counted and logged once, never raised or cleared."""
    ghost = {"condition": "Ghost", "table": "holding", "address": 20, "bit": 0, "severity": 500}
    settings = config(device.url, [*ALARMS, ghost], max_gap=16)
    assert [(r.table.value, r.address, r.count) for r in settings_requests(settings)] == [
        ("holding", 0, 21),
        ("coil", 0, 1),
    ]
    source = ModbusInput(settings, site="s", line="l")
    collector = Collector()
    source.emit_points = collector.emit_points
    await write(device.url, coil=True)
    checked = {t.signal: t for t in (await check(settings)).tags}  # `shopfloor check`
    assert (checked["alarm EStop"].value, checked["alarm EStop"].text) == (1.0, "active")
    assert (checked["alarm Manual"].value, checked["alarm Manual"].text) == (0.0, "not active")
    assert "exception 2" in checked["alarm Ghost"].problem
    task = asyncio.create_task(source.run(collector.emit))
    try:
        with caplog.at_level(logging.INFO):
            await eventually(lambda: source.alarms.read_errors >= 5, "failed reads", WAIT_S)
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert [(p.fields["condition"], p.fields["active"]) for p in collector.points] == [
        ("EStop", True)  # the readable alarms go on
    ]
    logged = [r.getMessage() for r in caplog.records if "Ghost" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "exception 2, illegal data address" in logged[0]
    assert "keeps its last state" in logged[0]


@contextlib.asynccontextmanager
async def simulated_line() -> AsyncIterator[tuple[Simulator, ModbusServer]]:
    """The default line's Modbus server, ticking 1 s of process time every 0.1 s."""
    spec = load_line()
    sim = Simulator(spec, seed=5)
    sim.warm_up(120)
    server = ModbusServer(spec, host="127.0.0.1", port=free_port(), on_run=sim.set_running)
    server.publish(sim.values())
    await server.start()

    async def tick() -> None:
        while True:
            sim.step(1.0)
            server.publish(sim.values())
            await asyncio.sleep(0.1)

    ticking = asyncio.create_task(tick())
    try:
        yield sim, server
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        await server.stop()


def generated(server: ModbusServer, *, alarms: bool = True) -> Config:
    """The Modbus entry `shopfloor sim-config` writes for the line, polled faster."""
    host, port = server.address
    entry = sim_connectors(load_line(), host, 4840, port)["connectors"][1]
    if not alarms:
        entry["devices"] = [{**d, "alarms": []} for d in entry["devices"]]
    return Config.model_validate(
        {**entry, "poll_interval_s": 0.2, "reconnect": {"min_s": 0.1, "max_s": 0.3}}
    )


def settings_requests(settings: Config) -> list[ReadRequest]:
    return ModbusInput(settings, site="s", line="l").requests


def shape(source: ModbusInput) -> list[tuple[int, str, int]]:
    """Its requests, by where they start (a read that took alarms in may be longer)."""
    return [(r.unit, r.table.value, r.address) for r in source.requests]


async def test_a_fault_in_the_simulator_raises_and_clears_its_alarm_in_influxdb(
    influx_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[Point] = []
    async with (
        simulated_line() as (sim, server),
        open_historian(influx_db_url) as historian,
        connect("", historian, tmp_path / "spool", generated(server)) as source,
    ):
        put = source.emit_points
        assert put is not None

        async def spy(points: Sequence[Point]) -> None:
            sent.extend(points)
            await put(points)

        source.emit_points = spy
        await asyncio.sleep(1)
        assert not await stored(historian, "Overcurrent")
        sim.inject("conveyor", "conveyor_jam", 1.0, None)
        (raised,) = await until_stored(historian, "Overcurrent", 1)

        with caplog.at_level(logging.WARNING, "connectors.modbus.alarms"):
            await server.stop()  # the connection drops; the connector reconnects, refreshes
            await eventually(lambda: not source.stats.connected, "the drop", WAIT_S)
            await asyncio.sleep(1)  # a few attempts to reconnect
            await server.start()
            await eventually(lambda: source.stats.reconnects, "a reconnect", WAIT_S)
        (unread,) = [
            r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()
        ]
        assert "HighTemperature (1/discrete/16), Overcurrent (1/discrete/17)" in unread
        await eventually(lambda: len(overcurrent(sent)) == 2, "the refresh", WAIT_S)
        assert len(await stored(historian, "Overcurrent")) == 1  # overwritten, not doubled

        sim.clear("conveyor", "conveyor_jam")
        raised, cleared = await until_stored(historian, "Overcurrent", 2)
    assert raised.tags["machine"] == "conveyor"
    assert raised.fields["active"] is True
    assert raised.fields["alarm_severity"] == 850
    assert raised.fields["severity_level"] == SeverityLevel.CRITICAL
    assert raised.fields["text"] == "current_a above 13"
    assert raised.fields["condition_id"] == "1/discrete/17"
    # the alarm bits ride in the reads of the devices' own status bits: no request more
    assert shape(source) == shape(ModbusInput(generated(server, alarms=False), site="", line=""))
    assert cleared.fields["active"] is False


def overcurrent(points: list[Point]) -> list[Point]:
    return [p for p in points if p.fields["condition"] == "Overcurrent" and p.fields["active"]]
