"""How a Modbus connector reaches its devices: TCP, RTU frames over TCP, or a serial line.

    modbus://host[:port]            Modbus TCP (MBAP header), port 502 by default
    modbus+rtu://host:port          RTU frames (CRC, no MBAP) through a TCP serial gateway
                                    in transparent mode, e.g. a Moxa NPort or USR-TCP232
    modbus+serial:///dev/ttyUSB0    RTU over a local serial port (settings in `serial:`)

Modbus TCP goes through our pipelined client (several requests in flight, matched by
transaction id); RTU frames carry no id, so RTU over TCP and serial go through pymodbus with
one request at a time. pymodbus runs without retries or reconnects of its own; the input owns
both. `new_session` gives the input either behind one `Session` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import logging
import math
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from connectors.modbus.pipeline import ClosedAfterAnswer, MalformedAnswer, PipelinedClient, Reply

DEFAULT_PORT = 502
_RESENDS = 3  # sends of one request to a device that keeps closing the connection
_log = logging.getLogger(__name__)
SHAPES = (
    "use modbus://host[:port], modbus+rtu://host:port (RTU through a TCP gateway) or "
    "modbus+serial:///dev/ttyUSB0"
)


class Transport(StrEnum):
    """The URL scheme, naming how requests are framed and carried."""

    TCP = "modbus"
    RTU_OVER_TCP = "modbus+rtu"
    SERIAL = "modbus+serial"


class Serial(BaseModel):
    """`serial:` line settings of a modbus+serial connector (RTU defaults: 19200 8E1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baudrate: int = Field(19200, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1


@dataclass(frozen=True, slots=True)
class Link:
    """A parsed connector URL: TCP host and port, or a serial device path."""

    transport: Transport
    host: str = ""
    port: int = DEFAULT_PORT
    device: str = ""


def parse_url(url: str) -> Link:
    """The link a URL names; ValueError that shows the accepted shapes."""
    parts = urlsplit(url.strip())
    try:
        transport = Transport(parts.scheme)
    except ValueError:
        raise ValueError(f"url {url!r} is not a Modbus url: {SHAPES}") from None
    if parts.query or parts.fragment or parts.username:
        raise ValueError(f"url {url!r} must hold no user, ?query or #fragment: {SHAPES}")
    if transport is Transport.SERIAL:
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"url {url!r} needs a device path, e.g. modbus+serial:///dev/ttyUSB0")
        return Link(transport, device=parts.path)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"url {url!r} has a bad port (1..65535): {SHAPES}") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"url {url!r} must hold only a host and a port: {SHAPES}")
    if port == 0 or (port is None and transport is Transport.RTU_OVER_TCP):
        raise ValueError(f"url {url!r} needs a port 1..65535 (gateways have no default port)")
    return Link(transport, host=parts.hostname, port=port or DEFAULT_PORT)


def _quiet_pymodbus() -> None:
    """pymodbus warns on every failed connect and logs an error for every late answer it
    skips (expected once a device timed out); our stats and log carry the reasons already.
    An application that set a level for pymodbus keeps it."""
    names = ("pymodbus", "pymodbus.logging")
    if all(logging.getLogger(name).level == logging.NOTSET for name in names):
        logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)


class ConnectError(Exception):
    """The endpoint cannot be reached; the message says why, in one line."""


async def connect(client: ModbusBaseClient, link: Link, url: str, timeout_s: float) -> None:
    """Connect `client` under `timeout_s`, or raise ConnectError saying why it failed.

    pymodbus only returns False (its warning holds the reason and is silenced), so on failure
    the reason is found by opening the same socket once more ourselves.
    """
    try:
        async with asyncio.timeout(timeout_s):
            if await client.connect():
                return
    except TimeoutError:
        raise ConnectError(f"cannot connect to {url}: no answer within {timeout_s:g} s") from None
    raise ConnectError(f"cannot connect to {url}: {await _why_unreachable(link, timeout_s)}")


async def _why_unreachable(link: Link, timeout_s: float) -> str:
    if link.transport is Transport.SERIAL:
        if not await asyncio.to_thread(os.path.exists, link.device):
            return f"serial device {link.device} does not exist (is the adapter plugged in?)"
        return f"cannot open serial device {link.device} (in use, or no permission?)"
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(link.host, link.port)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s (host down, or a firewall drops the packets)"
    except OSError as exc:
        return _socket_reason(exc, link)
    writer.close()
    return "the device accepted the connection, then closed it"


def _socket_reason(exc: OSError, link: Link) -> str:
    where = f"{link.host}:{link.port}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: nothing listens on {where} (wrong port, or server down)"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"no route to {link.host}: check the address and the network"
    if isinstance(exc, socket.gaierror):
        return f"host name {link.host!r} is not known: check the spelling or use the IP address"
    return f"{where}: {exc.strerror or exc}"


def new_client(link: Link, serial: Serial | None, *, name: str) -> ModbusBaseClient:
    """A pymodbus client for the link, without pymodbus' own retries and reconnects.

    No pymodbus timeout: it wraps each call in asyncio.wait_for, which on Python 3.11 can
    swallow a cancellation that races with completion; callers bound calls themselves.
    """
    _quiet_pymodbus()
    # pymodbus annotates `timeout` as a float; None is its asyncio.wait_for without a limit
    if link.transport is Transport.SERIAL:
        if importlib.util.find_spec("serial") is None:
            raise ValueError(
                "modbus+serial needs the pyserial package: install it with "
                "`pip install pyserial` (serial RTU is not in the default install)"
            )
        settings = serial or Serial()
        return AsyncModbusSerialClient(
            link.device,
            framer=FramerType.RTU,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            name=name,
            timeout=None,  # type: ignore[arg-type]
            retries=0,
            reconnect_delay=0,
        )
    framer = FramerType.RTU if link.transport is Transport.RTU_OVER_TCP else FramerType.SOCKET
    return AsyncModbusTcpClient(
        link.host,
        port=link.port,
        framer=framer,
        name=name,
        timeout=None,  # type: ignore[arg-type]
        retries=0,
        reconnect_delay=0,
    )


def pymodbus_reader(client: ModbusBaseClient, function: int) -> Callable[..., Awaitable[ModbusPDU]]:
    """The pymodbus client method for read function `function` (FC1-4)."""
    return {
        1: client.read_coils,
        2: client.read_discrete_inputs,
        3: client.read_holding_registers,
        4: client.read_input_registers,
    }[function]


class Session(Protocol):
    """One connection to an endpoint, as the input polls it."""

    @property
    def pipelined(self) -> bool:
        """Whether answers carry transaction ids (several requests may be in flight)."""
        ...

    @property
    def dropped(self) -> int:
        """Answers that matched no waiting request, so far."""
        ...

    @property
    def wrong_ids(self) -> int:
        """Answers that carried a wrong transaction id, so far."""
        ...

    @property
    def heard_at(self) -> float:
        """Loop time of the last answer, late ones included (-inf: not known)."""
        ...

    async def open(self, timeout_s: float) -> None:
        """Connect, or raise ConnectError saying why."""
        ...

    async def read(
        self, function: int, unit: int, address: int, count: int, deadline: float
    ) -> Reply:
        """One read, answered by `deadline` (loop time) or TimeoutError; ConnectionError when
        the connection failed, MalformedAnswer for an answer that is not what it says."""
        ...

    def close(self) -> None: ...


class TcpSession:
    """Modbus TCP through `PipelinedClient`.

    A device that closes the connection after answering (cheap PLCs, some gateways) is served
    by opening it again before the next request, without counting an outage. When it closed on
    requests still in flight, it serves one at a time: from then on (or from the start, with
    `close_after_answer: true`) each request goes out alone on a connection of its own, opened
    without waiting for the device's close to arrive.
    """

    pipelined = True

    def __init__(
        self,
        link: Link,
        url: str,
        *,
        close_after_answer: bool = False,
        on_late: Callable[[int, float], None] | None = None,
    ) -> None:
        self._link = link
        self._url = url
        self._client = PipelinedClient()
        self._client.on_late = on_late
        self._one_at_a_time = close_after_answer
        self._turn = asyncio.Lock()  # one request at a time, for a device that closes
        self._reopening = asyncio.Lock()

    @property
    def dropped(self) -> int:
        return self._client.dropped

    @property
    def wrong_ids(self) -> int:
        return self._client.wrong_ids

    @property
    def heard_at(self) -> float:
        return self._client.heard_at

    async def open(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._client.connect(self._link.host, self._link.port)
        except TimeoutError:
            raise ConnectError(
                f"cannot connect to {self._url}: no answer within {timeout_s:g} s"
            ) from None
        except OSError as exc:
            reason = _socket_reason(exc, self._link)
            raise ConnectError(f"cannot connect to {self._url}: {reason}") from None

    async def read(
        self, function: int, unit: int, address: int, count: int, deadline: float
    ) -> Reply:
        if not (self._one_at_a_time or self._client.closed_after_answer):  # the usual case
            try:
                return await self._client.read(function, unit, address, count, deadline)
            except ClosedAfterAnswer:
                self._serve_one_at_a_time()
        for _ in range(_RESENDS):
            async with self._turn if self._one_at_a_time else contextlib.nullcontext():
                if self._client.closed_after_answer or (
                    self._one_at_a_time and self._client.answered
                ):
                    await self._reopen(deadline)
                try:
                    return await self._client.read(function, unit, address, count, deadline)
                except ClosedAfterAnswer:
                    self._serve_one_at_a_time()
        raise ConnectionResetError(
            f"the device closed the connection {_RESENDS} times before answering"
        )

    async def _reopen(self, deadline: float) -> None:
        """Connect again after the device closed; concurrent callers share one connect."""
        async with asyncio.timeout_at(deadline), self._reopening:
            if self._client.closed_after_answer or self._one_at_a_time:
                await self._client.connect(self._link.host, self._link.port)

    def _serve_one_at_a_time(self) -> None:
        if not self._one_at_a_time:
            self._one_at_a_time = True
            _log.info(
                "%s closes the connection after each answer: sending one request per "
                "connection (set close_after_answer: true to skip finding this out)",
                self._url,
            )

    def close(self) -> None:
        self._client.close()


class PymodbusSession:
    """RTU over TCP or serial through pymodbus: one request at a time (no transaction ids)."""

    pipelined = False
    dropped = 0  # pymodbus skips stray RTU frames itself
    wrong_ids = 0  # RTU frames carry no id
    heard_at = -math.inf  # not known: a silent cycle takes the connection down

    def __init__(self, link: Link, serial: Serial | None, url: str, *, name: str) -> None:
        self._link = link
        self._url = url
        self._client = new_client(link, serial, name=name)

    async def open(self, timeout_s: float) -> None:
        await connect(self._client, self._link, self._url, timeout_s)

    async def read(
        self, function: int, unit: int, address: int, count: int, deadline: float
    ) -> Reply:
        try:
            async with asyncio.timeout_at(deadline):
                pdu = await pymodbus_reader(self._client, function)(
                    address, count=count, device_id=unit
                )
        except ModbusException as exc:
            raise ConnectionError(str(exc)) from None
        return reply_of(pdu, function)

    def close(self) -> None:
        self._client.close()


def reply_of(pdu: ModbusPDU, function: int) -> Reply:
    """A pymodbus response as the wire data a `Reply` holds."""
    if pdu.isError():
        return Reply(exception_code=getattr(pdu, "exception_code", 0))
    if function in (1, 2):
        bits = pdu.bits
        packed = bytearray((len(bits) + 7) // 8)
        for index, bit in enumerate(bits):
            if bit:
                packed[index // 8] |= 1 << (index % 8)
        return Reply(data=bytes(packed))
    return Reply(data=struct.pack(f">{len(pdu.registers)}H", *pdu.registers))


def new_session(
    link: Link,
    serial: Serial | None,
    url: str,
    *,
    name: str,
    close_after_answer: bool = False,
    on_late: Callable[[int, float], None] | None = None,
) -> Session:
    """The session for `link`; ValueError if its transport cannot be used here (pyserial).
    `on_late(unit, seconds)` hears of each answer that came after its timeout (Modbus TCP)."""
    if link.transport is Transport.TCP:
        return TcpSession(link, url, close_after_answer=close_after_answer, on_late=on_late)
    return PymodbusSession(link, serial, url, name=name)


class ReadFailed(Exception):
    """One read of a commissioning tool got no answer; the message says why in one line."""


async def read_once(
    session: Session, function: int, unit: int, address: int, count: int, timeout_s: float
) -> Reply | str:
    """One read for `check` and `probe`: the answer, or what was wrong with it (a malformed
    answer); ReadFailed when the device did not answer or the connection failed."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        return await session.read(function, unit, address, count, deadline)
    except TimeoutError:
        raise ReadFailed(f"timeout: unit {unit} did not answer within {timeout_s:g} s") from None
    except MalformedAnswer as exc:
        return f"unit {unit}: {exc}"
    except OSError as exc:
        raise ReadFailed(f"connection failed: {exc}") from None
