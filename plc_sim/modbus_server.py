"""Modbus TCP face of the line: one server, one unit id per machine with protocol `modbus`.

Built on pymodbus's SimDevice API. Each (unit, table) is one block spanning the lowest to the
highest address the line file uses; gaps inside read as 0, so a client may coalesce reads
across them, while a table the device does not have at all answers ILLEGAL ADDRESS. Registers
are read-only; the only writable points are the coils of `command` signals (run/stop), which
call `on_run`. `publish` re-encodes the engineering values into a per-block image each tick, and
each device's alarm bits (discrete ALARM_BITS + N, plc_sim.registers: on while its N-th limit
alarm is active); the device's access hook copies that image into pymodbus's registers on every
request.

Device faults make one unit id misbehave the way field devices do, while the others on the same
server answer as usual (several devices behind one gateway): `delay_s` answers every request of
the device that late (a slow serial device, an overloaded PLC), `exception_code` answers every
request with that Modbus exception (6 device busy, 4 device failure, 11 gateway target failed to
respond, ...). Set them with `ModbusServer(faults=...)` or, while serving, `set_device_fault`;
`parse_device_fault("air_compressor:delay=2")` reads the command-line form
`DEVICE:delay=SECONDS,exception=CODE` (DEVICE: a unit id or a machine name).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from plc_sim.alarms import LimitAlarm, alarm_bits, modbus_alarms
from plc_sim.machines import SignalKind
from plc_sim.registers import ALARM_BITS, encode
from plc_sim.spec import BIT_TABLES, LineSpec, ModbusMap

OnRun = Callable[[str, bool], None]
TABLES = ("coil", "discrete", "holding", "input")  # the order SimDevice wants its blocks in
FUNCTION_TABLES = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input"}
FUNCTION_TABLES.update(dict.fromkeys((3, 6, 16, 22, 23), "holding"))
COIL_WRITES = (5, 15)
FAULT_FORM = (
    "expected DEVICE:delay=SECONDS,exception=CODE (DEVICE: unit id or machine name), "
    "e.g. air_compressor:delay=2 or 3:exception=6"
)


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """How one Modbus device misbehaves: answers `delay_s` late, or with `exception_code`
    (both: a late exception). The default is a healthy device."""

    delay_s: float = 0.0
    exception_code: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ValueError(f"delay must be 0 or more seconds, not {self.delay_s}")
        codes = sorted(int(code) for code in ExcCodes)
        if self.exception_code and self.exception_code not in codes:
            raise ValueError(f"exception code {self.exception_code} is not one of {codes}")


def parse_device_fault(text: str) -> tuple[str, DeviceFault]:
    """`DEVICE:delay=SECONDS,exception=CODE` (either or both) as (device, fault); DEVICE is a
    unit id or a machine name. ValueError says what is wrong and the expected form."""
    device, sep, settings = text.partition(":")
    if not (sep and device.strip() and settings.strip()):
        raise ValueError(f"{text!r}: {FAULT_FORM}")
    values: dict[str, str] = {}
    for item in settings.split(","):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in ("delay", "exception") or key.strip() in values:
            raise ValueError(f"{text!r}: {FAULT_FORM}")
        values[key.strip()] = value.strip()
    try:
        delay, code = float(values.get("delay", 0)), int(values.get("exception", 0))
    except ValueError:
        raise ValueError(f"{text!r}: {FAULT_FORM}") from None
    try:
        return device.strip(), DeviceFault(delay, code)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


@dataclass
class _Block:
    """One table of one device: its address span and the register image clients read."""

    table: str
    start: int  # first address (registers) or first bit address, as the line file says
    size: int  # registers or bits
    points: list[tuple[str, ModbusMap]] = field(default_factory=list)
    image: list[int] = field(default_factory=list)

    @property
    def bits(self) -> bool:
        return self.table in BIT_TABLES

    @property
    def first_word(self) -> int:
        """Where pymodbus starts the block: bit blocks are aligned to whole 16-bit words."""
        return self.start // 16 if self.bits else self.start

    def sim_data(self) -> SimData:
        if self.bits:
            return SimData(self.start, count=self.size, values=False, datatype=DataType.BITS)
        return SimData(
            self.start, count=self.size, values=0, datatype=DataType.REGISTERS, readonly=True
        )

    def set_bit(self, address: int, on: bool) -> None:
        word, bit = address // 16 - self.first_word, address % 16
        self.image[word] = self.image[word] | (1 << bit) if on else self.image[word] & ~(1 << bit)


@dataclass
class _Device:
    machine: str
    unit_id: int
    blocks: dict[str, _Block]
    commands: set[int]  # coil addresses of run/stop commands: the only writable points
    alarms: list[LimitAlarm]  # its alarm bit N (discrete ALARM_BITS + N) is alarms[N]
    fault: DeviceFault = field(default_factory=DeviceFault)


def _devices(spec: LineSpec) -> list[_Device]:
    devices = []
    alarms = modbus_alarms(spec)
    for name, machine in spec.machines.items():
        if machine.protocol != "modbus" or machine.unit_id is None:
            continue
        by_table: dict[str, list[tuple[str, ModbusMap]]] = {}
        for signal, s in machine.signals.items():
            assert s.modbus is not None  # the spec guarantees a mapping on modbus machines
            by_table.setdefault(s.modbus.table, []).append((signal, s.modbus))
        # the alarm bits are discrete inputs, from ALARM_BITS on
        reserved = range(ALARM_BITS, ALARM_BITS + len(alarms[name]))
        if reserved:
            by_table.setdefault("discrete", [])
        blocks = {}
        for table, points in by_table.items():
            extra = list(reserved) if table == "discrete" else []
            start = min([mb.address for _, mb in points] + extra)
            end = max([mb.address + mb.width for _, mb in points] + [a + 1 for a in extra])
            block = _Block(table, start, end - start, sorted(points, key=lambda p: p[1].address))
            words = (end - 1) // 16 - block.first_word + 1 if block.bits else block.size
            block.image = [0] * words
            blocks[table] = block
        commands = {
            s.modbus.address
            for signal, s in machine.signals.items()
            if s.modbus is not None and spec.signal_kind(name, signal) is SignalKind.COMMAND
        }
        devices.append(_Device(name, machine.unit_id, blocks, commands, alarms[name]))
    return devices


class _RequestHandler(ServerRequestHandler):
    """Answers every request, each with its own transaction and unit id, as gateways do.

    pymodbus 3.16 decodes one frame per read from the socket, keeps only the latest request
    for the answer (a device answering late would answer with the ids of a request that
    arrived meanwhile, for another unit) and empties its receive buffer on every send: requests
    a client pipelines (several in flight on one connection) would go unanswered. Here every
    frame of a read is queued and answered in turn, and a send keeps what is still unread.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._requests: deque[tuple[ModbusPDU, Any]] = deque()

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        used = 0
        while used < len(data):
            cut = super().callback_data(data[used:], addr)  # schedules one handle_request
            if self.last_pdu is not None:
                self._requests.append((self.last_pdu, self.last_addr))
            if not cut:
                break
            used += cut
        return used

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        unread = self.recv_buffer
        super().send(data, addr)
        self.recv_buffer = unread

    async def handle_request(self) -> None:
        if not self._requests:
            return
        request, addr = self._requests.popleft()
        try:
            response = await request.datastore_update(self.server.context, request.dev_id)
        except (NoSuchIdException, KeyError):  # a unit id the line does not have (SimCore
            # raises KeyError for it): answered as a gateway answers for an absent device
            response = ExceptionResponse(request.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        response.transaction_id = request.transaction_id
        response.dev_id = request.dev_id
        self.server_send(response, addr)


class PipelinedTcpServer(ModbusTcpServer):
    """pymodbus' TCP server answering requests pipelined on one connection (see above)."""

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusServer:
    """A pymodbus TCP server for the Modbus machines of a line; stoppable and restartable."""

    def __init__(
        self,
        spec: LineSpec,
        *,
        host: str,
        port: int,
        on_run: OnRun,
        faults: Mapping[int | str, DeviceFault] | None = None,
    ) -> None:
        self.address = (host, port)
        self._on_run = on_run
        self._devices = _devices(spec)
        self._server: ModbusTcpServer | None = None
        self._late: set[asyncio.Task[object]] = set()  # answers being delayed by a fault
        self.most_held = 0  # the most answers held back by a fault at one time, so far
        for device, fault in (faults or {}).items():
            self.set_device_fault(device, fault)

    def set_device_fault(self, device: int | str, fault: DeviceFault | None) -> None:
        """Make one device (unit id or machine name) misbehave from its next request on;
        None heals it. ValueError names the devices there are."""
        for candidate in self._devices:
            if device in (candidate.unit_id, candidate.machine, str(candidate.unit_id)):
                candidate.fault = fault or DeviceFault()
                return
        known = ", ".join(f"{d.unit_id} ({d.machine})" for d in self._devices)
        raise ValueError(f"no Modbus device {device!r} on this line; there are: {known}")

    @property
    def unit_ids(self) -> list[int]:
        return [device.unit_id for device in self._devices]

    async def with_fault_on_all(self, fault: DeviceFault, seconds: float) -> None:
        """Every device misbehaves for `seconds`, then answers as before (chaos mode)."""
        before = [device.fault for device in self._devices]
        for device in self._devices:
            device.fault = fault
        try:
            await asyncio.sleep(seconds)
        finally:
            for device, fault_before in zip(self._devices, before, strict=True):
                device.fault = fault_before

    async def start(self) -> None:
        """Listen (again) on the configured address; the register images survive a restart."""
        server = PipelinedTcpServer(
            [self._sim_device(d) for d in self._devices], address=self.address
        )
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop every client connection (and the answers still delayed)."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()
        for task in list(self._late):
            task.cancel()

    def publish(self, values: dict[tuple[str, str], float]) -> None:
        """Encode the engineering values into the register images."""
        for device in self._devices:
            for block in device.blocks.values():
                for signal, mb in block.points:
                    value = values[(device.machine, signal)]
                    if block.bits:
                        block.set_bit(mb.address, value >= 0.5)
                        continue
                    assert mb.dtype is not None and mb.dtype != "bool"
                    offset = mb.address - block.start
                    words = encode(value, mb.dtype, mb.word_order, mb.scale)
                    block.image[offset : offset + len(words)] = words
            for bit, on in enumerate(alarm_bits(device.alarms, values)):
                device.blocks["discrete"].set_bit(ALARM_BITS + bit, on)

    def _sim_device(self, device: _Device) -> SimDevice:
        def sim_table(table: str) -> list[SimData]:
            block = device.blocks.get(table)
            if block is not None:
                return [block.sim_data()]
            # SimDevice needs all four tables; the access hook refuses this one
            bits = table in BIT_TABLES
            kind = DataType.BITS if bits else DataType.REGISTERS
            return [SimData(0, values=False if bits else 0, datatype=kind)]

        coil, discrete, holding, input_ = (sim_table(table) for table in TABLES)

        async def access(
            function_code: int,
            _start: int,
            address: int,
            _count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            fault = device.fault
            if fault.delay_s:
                await self._late_by(fault.delay_s)
            if fault.exception_code:
                return ExcCodes(fault.exception_code)
            return self._access(device, function_code, address, registers, set_values)

        return SimDevice(device.unit_id, simdata=(coil, discrete, holding, input_), action=access)

    async def _late_by(self, delay_s: float) -> None:
        """Hold this request's answer back; `stop` cancels what is still held."""
        task = asyncio.current_task()
        assert task is not None
        self._late.add(task)
        self.most_held = max(self.most_held, len(self._late))
        try:
            await asyncio.sleep(delay_s)
        finally:
            self._late.discard(task)

    def _access(
        self,
        device: _Device,
        function_code: int,
        address: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Serve the latest image; turn coil writes into run/stop commands."""
        block = device.blocks.get(FUNCTION_TABLES.get(function_code, ""))
        if block is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if function_code in COIL_WRITES and set_values is not None:
            if any(address + i not in device.commands for i in range(len(set_values))):
                return ExcCodes.ILLEGAL_ADDRESS
            for i, on in enumerate(set_values):
                block.set_bit(address + i, bool(on))
                self._on_run(device.machine, bool(on))
        registers[: len(block.image)] = block.image
        return None
