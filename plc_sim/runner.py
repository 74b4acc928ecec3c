"""Runs the line in real time: steps the model on a fixed schedule and feeds both servers.

Ticks are paced against the event loop clock from a fixed origin, so the simulation neither
drifts nor bursts: a late tick runs the steps it missed (up to `MAX_CATCH_UP_S` worth; beyond
that the backlog is dropped, e.g. after the machine was suspended). The fault schedule of the
line file is played by the simulator in simulation time; `on_event` gets each fault start and
end with the wall-clock time of the tick that published it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

from plc_sim.chaos import Chaos
from plc_sim.faults import FaultEvent
from plc_sim.modbus_server import DeviceFault, ModbusServer
from plc_sim.opcua_server import OpcUaServer, SecureEndpoint
from plc_sim.process import Simulator
from plc_sim.spec import LineSpec

OnEvent = Callable[[FaultEvent, int], Awaitable[None] | None]
MAX_CATCH_UP_S = 10.0
STOP_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


async def run_simulator(
    spec: LineSpec,
    *,
    seed: int,
    opcua: tuple[str, int] | None = None,
    modbus: tuple[str, int] | None = None,
    tick_s: float | None = None,
    on_event: OnEvent | None = None,
    speed: float = 1.0,
    ready: asyncio.Event | None = None,
    opcua_secure: SecureEndpoint | None = None,
    warmup_s: float = 0.0,
    modbus_faults: Mapping[int | str, DeviceFault] | None = None,
    opcua_timestamps: Literal["change", "tick"] = "change",
    chaos: Chaos | None = None,
) -> None:
    """Serve the simulated line until cancelled, then close both servers.

    `ready` is set once both servers listen, so that clients in the same process need not
    start with a refused connection. `opcua_secure` adds the secured OPC UA server (with login)
    beside the open one; `modbus_faults` make Modbus devices answer late or with exceptions
    (plc_sim.modbus_server.DeviceFault; ValueError for a device the line does not have).
    `warmup_s` runs the process that long before serving (Simulator.warm_up).
    `opcua_timestamps` is OpcUaServer's `timestamps`; `chaos` plays its faults against both
    servers while they serve (plc_sim.chaos).

    Each tick of `tick_s` wall seconds (default: the line file's) advances the model by
    `tick_s * speed` simulated seconds. `on_event(event, wall_ts_ns)` may be sync or async;
    its exceptions end the run.
    """
    tick = spec.tick_s if tick_s is None else tick_s
    if tick <= 0 or speed <= 0:
        raise ValueError("tick_s and speed must be positive")
    sim = Simulator(spec, seed)
    sim.warm_up(warmup_s)
    servers: list[OpcUaServer | ModbusServer] = []
    if opcua is not None:
        host, port = opcua
        servers.append(
            OpcUaServer(
                spec,
                host=host,
                port=port,
                inject=sim.inject,
                clear=sim.clear,
                secure=opcua_secure,
                timestamps=opcua_timestamps,
            )
        )
    if modbus is not None:
        host, port = modbus
        servers.append(
            ModbusServer(spec, host=host, port=port, on_run=sim.set_running, faults=modbus_faults)
        )
    try:
        for server in servers:
            await server.start()
        if ready is not None:
            ready.set()
        async with asyncio.TaskGroup() as group:
            if chaos is not None:
                opcua_server = next((s for s in servers if isinstance(s, OpcUaServer)), None)
                modbus_server = next((s for s in servers if isinstance(s, ModbusServer)), None)
                group.create_task(chaos.run(opcua_server, modbus_server), name="chaos")
            await _tick_forever(sim, servers, tick, speed, on_event)
    finally:
        for server in servers:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await server.stop()


async def _tick_forever(
    sim: Simulator,
    servers: list[OpcUaServer | ModbusServer],
    tick: float,
    speed: float,
    on_event: OnEvent | None,
) -> None:
    loop = asyncio.get_running_loop()
    origin, done = loop.time(), 0
    max_steps = max(1, int(MAX_CATCH_UP_S / tick))
    while True:
        due = int((loop.time() - origin) / tick)
        if due - done > max_steps:
            log.warning("simulator fell %d ticks behind; dropping the backlog", due - done)
            done = due - max_steps
        for _ in range(due - done):
            sim.step(tick * speed)
        done = due
        ts_ns = time.time_ns()
        await _publish(sim, servers, ts_ns)
        for event in sim.drain_events():
            if on_event is not None:
                result = on_event(event, ts_ns)
                if inspect.isawaitable(result):
                    await result
        await asyncio.sleep(max(0.0, origin + (done + 1) * tick - loop.time()))


async def _publish(sim: Simulator, servers: list[OpcUaServer | ModbusServer], ts_ns: int) -> None:
    values = sim.values()
    stamp = datetime.fromtimestamp(ts_ns / 1e9, UTC)
    for server in servers:
        if isinstance(server, OpcUaServer):
            await server.publish(values, stamp)
        else:
            server.publish(values)
