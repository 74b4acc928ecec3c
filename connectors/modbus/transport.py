"""How a Modbus connector reaches its devices: TCP, RTU frames over TCP, or a serial line.

    modbus://host[:port]            Modbus TCP (MBAP header), port 502 by default
    modbus+rtu://host:port          RTU frames (CRC, no MBAP) through a TCP serial gateway
                                    in transparent mode, e.g. a Moxa NPort or USR-TCP232
    modbus+serial:///dev/ttyUSB0    RTU over a local serial port (settings in `serial:`)

pymodbus runs without retries or reconnects of its own; the input owns both.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient

DEFAULT_PORT = 502
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


def new_client(link: Link, serial: Serial | None, *, name: str) -> ModbusBaseClient:
    """A pymodbus client for the link, without pymodbus' own retries and reconnects.

    No pymodbus timeout: it wraps each call in asyncio.wait_for, which on Python 3.11 can
    swallow a cancellation that races with completion; callers bound calls themselves.
    """
    common = {"name": name, "timeout": None, "retries": 0, "reconnect_delay": 0}
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
            **common,  # type: ignore[arg-type]
        )
    framer = FramerType.RTU if link.transport is Transport.RTU_OVER_TCP else FramerType.SOCKET
    return AsyncModbusTcpClient(link.host, port=link.port, framer=framer, **common)  # type: ignore[arg-type]
