"""Chaos mode: the servers misbehave the way real plant networks and PLCs do, on a seeded schedule.

Like Microsoft's OPC PLC chaos mode, so that connectors are tested against more than a polite
server. Every `every_s` (a random interval in that range) one fault starts and lasts
`lasting_s` (random in that range), then ends; never two at once, so each recovery can be timed.
The faults come in rounds, each kind once per round in a shuffled order:

    opcua_drop_sessions   every OPC UA client connection is closed
    opcua_stall           the OPC UA servers stop reading requests (a frozen PLC, socket open)
    opcua_restart         the OPC UA servers stop and start again (new sessions needed)
    modbus_drop           the Modbus server drops every connection and listens again
    modbus_stall          every Modbus device answers late (after the fault: on time again)
    modbus_exceptions     one Modbus device answers every request with exception 6 (busy)

The same seed gives the same schedule. `events` keeps each fault with its wall-clock start and
end, for whoever checks what the clients made of it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from plc_sim.modbus_server import DeviceFault, ModbusServer
from plc_sim.opcua_server import OpcUaServer

OPCUA_FAULTS = ("opcua_drop_sessions", "opcua_stall", "opcua_restart")
MODBUS_FAULTS = ("modbus_drop", "modbus_stall", "modbus_exceptions")
BUSY = 6


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """One fault: what, and when it started and ended (ns since the epoch)."""

    kind: str
    start_ns: int
    end_ns: int


class Chaos:
    """Plays a seeded schedule of faults against the servers it is given: `faults` of them, or
    until cancelled."""

    def __init__(
        self,
        seed: int,
        *,
        every_s: tuple[float, float] = (20.0, 60.0),
        lasting_s: tuple[float, float] = (2.0, 8.0),
        on_event: Callable[[ChaosEvent], None] | None = None,
        faults: int | None = None,
    ) -> None:
        self._random = random.Random(seed)
        self._every_s = every_s
        self._lasting_s = lasting_s
        self._on_event = on_event
        self._faults = faults  # None: until cancelled
        self.events: list[ChaosEvent] = []

    async def run(self, opcua: OpcUaServer | None, modbus: ModbusServer | None) -> None:
        kinds = (OPCUA_FAULTS if opcua else ()) + (MODBUS_FAULTS if modbus else ())
        round_: list[str] = []
        while kinds and (self._faults is None or len(self.events) < self._faults):
            if not round_:
                round_ = self._random.sample(kinds, len(kinds))
            await asyncio.sleep(self._random.uniform(*self._every_s))
            kind = round_.pop()
            lasting = self._random.uniform(*self._lasting_s)
            start = time.time_ns()
            await self._play(kind, lasting, opcua, modbus)
            event = ChaosEvent(kind, start, time.time_ns())
            self.events.append(event)
            if self._on_event is not None:
                self._on_event(event)

    async def _play(
        self, kind: str, lasting: float, opcua: OpcUaServer | None, modbus: ModbusServer | None
    ) -> None:
        if opcua is not None and kind == "opcua_drop_sessions":
            opcua.drop_connections()
        elif opcua is not None and kind == "opcua_stall":
            await opcua.stall(lasting)
        elif opcua is not None and kind == "opcua_restart":
            await opcua.stop()
            await asyncio.sleep(lasting)
            await opcua.start()
        elif modbus is not None and kind == "modbus_drop":
            await modbus.stop()
            await asyncio.sleep(lasting)
            await modbus.start()
        elif modbus is not None and kind == "modbus_stall":
            await modbus.with_fault_on_all(DeviceFault(delay_s=lasting), lasting)
        elif modbus is not None:
            unit = self._random.choice(modbus.unit_ids)
            modbus.set_device_fault(unit, DeviceFault(exception_code=BUSY))
            await asyncio.sleep(lasting)
            modbus.set_device_fault(unit, None)
