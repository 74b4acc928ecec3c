"""The `type: modbus` entry of the connectors file, validated with messages that say the fix.

Field order matters: pydantic validates fields in declaration order, and the cross-field checks
(type vs table, address + width, bit vs type, tag width vs read limit) read the fields declared
before them from `info.data`, so each error lands on the field a user has to change.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from connectors.modbus.codec import REGISTER_WIDTH, DataType, WordOrder
from connectors.modbus.transport import Link, Serial, Transport, parse_url
from core.reconnect import Reconnect

MAX_REGISTERS_PER_READ = 125  # Modbus limit for function codes 3 and 4
MAX_BITS_PER_READ = 2000  # Modbus limit for function codes 1 and 2
MAX_IN_FLIGHT = 64  # requests outstanding on one connection, at most
# Default requests outstanding on one Modbus TCP connection: one per unit id (each device's
# own default) for up to this many units at once; gateways queue per serial line anyway.
DEFAULT_IN_FLIGHT = 16
_VALID_UNITS = "1..247 (0 or 255 for a device addressed directly over TCP)"


class Table(StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def holds_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def function_code(self) -> int:
        """The Modbus function that reads this table (FC1-4)."""
        return _READ_FUNCTIONS[self]


_READ_FUNCTIONS = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


_SINGLE_BITS = (DataType.BIT, DataType.BOOL)
_NUMERIC = [t.value for t in DataType if t not in _SINGLE_BITS]


def _choice(value: Any, enum: type[StrEnum], what: str, *, upper: bool = False) -> Any:
    """Map a spelling to an enum member case-insensitively, or say which spellings exist."""
    if not isinstance(value, str):
        return value
    spelled = value.strip().upper() if upper else value.strip().lower()
    try:
        return enum(spelled)
    except ValueError:
        names = ", ".join(member.value for member in enum)
        raise ValueError(f"unknown {what} {value!r}: use one of {names}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Tag:
    """One signal read from one place of a device.

    A slotted dataclass, not a model: a plant-scale file holds tens of thousands of registers,
    and a model's instance dict and set of given fields cost ~500 B a tag.
    """

    signal: str
    table: Table
    type: DataType | None = Field(default=None, validate_default=True)
    # Required, spelled as Field() so that it may follow a defaulted field (mypy does not know
    # that trick): with kw_only fields, pydantic's cross-field checks see no earlier fields.
    address: int = Field()  # type: ignore[misc]
    order: WordOrder = WordOrder.ABCD
    bit: int | None = Field(default=None, validate_default=True)
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("table", mode="before")
    @classmethod
    def _known_table(cls, value: Any) -> Any:
        return _choice(value, Table, "table")

    @field_validator("order", mode="before")
    @classmethod
    def _known_order(cls, value: Any) -> Any:
        return _choice(value, WordOrder, "order", upper=True)

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        return _choice(value, DataType, "type")

    @field_validator("type")
    @classmethod
    def _type_fits_table(cls, value: DataType | None, info: ValidationInfo) -> DataType | None:
        table = info.data.get("table")
        if table is None:
            return value
        if table.holds_bits:
            if value not in (None, DataType.BOOL):
                raise ValueError(
                    f"type {value} cannot be read from a {table} (it holds single bits): "
                    "use table holding or input, or drop type (bool is implied)"
                )
            return DataType.BOOL
        if value is None:
            raise ValueError(
                f"a tag in the {table} table needs a type: one of {', '.join(_NUMERIC)}, or bit"
            )
        if value is DataType.BOOL:
            raise ValueError(
                f"bool is for coil or discrete tags; for one bit of a {table} register "
                "use type: bit with bit: 0..15"
            )
        return value

    @field_validator("address")
    @classmethod
    def _address_in_range(cls, value: int, info: ValidationInfo) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(
                f"address {value} is outside 0..65535: use the 0-based protocol address "
                "(a manual's 40001 is holding address 0)"
            )
        dtype = info.data.get("type")
        width = REGISTER_WIDTH[dtype] if dtype else 1
        if value + width > 65536:
            raise ValueError(
                f"a {dtype} needs {width} registers, so address {value} runs past 65535: "
                f"use an address of at most {65536 - width}"
            )
        return value

    @field_validator("order")
    @classmethod
    def _order_fits_type(cls, value: WordOrder, info: ValidationInfo) -> WordOrder:
        dtype = info.data.get("type")
        if dtype in _SINGLE_BITS and value is not WordOrder.ABCD:
            raise ValueError(f"order makes no sense for {dtype}: remove it")
        return value

    @field_validator("bit")
    @classmethod
    def _bit_in_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        is_bit = info.data.get("type") is DataType.BIT
        if value is None and is_bit:
            raise ValueError("type bit needs bit: 0..15 (which bit of the register, 0 = LSB)")
        if value is not None and not is_bit:
            raise ValueError("bit only applies to type: bit; remove it or set type: bit")
        if value is not None and not 0 <= value <= 15:
            raise ValueError(f"bit {value} is outside 0..15: a register has 16 bits, 0 = LSB")
        return value

    @field_validator("scale", "offset")
    @classmethod
    def _scaling_fits_type(cls, value: float, info: ValidationInfo) -> float:
        dtype = info.data.get("type")
        neutral = 1.0 if info.field_name == "scale" else 0.0
        if dtype in _SINGLE_BITS and value != neutral:
            raise ValueError(f"{info.field_name} makes no sense for {dtype}: remove it")
        return value

    @property
    def dtype(self) -> DataType:
        """The type after validation (never None: coils and discretes are bool)."""
        assert self.type is not None
        return self.type

    @property
    def width(self) -> int:
        """Registers (or bits, for coils and discretes) this tag occupies."""
        return REGISTER_WIDTH[self.dtype]


class Alarm(_Strict):
    """One PLC alarm read from a device: a coil or discrete input, one bit of a register, or
    a whole register compared with a value (`equals`) or tested against a mask (`mask`)."""

    condition: str = Field(min_length=1)
    table: Table
    address: int
    bit: int | None = None
    equals: int | None = None
    mask: int | None = None
    message: str = ""
    severity: int  # 1-1000 as an OPC UA condition's: the same levels apply (core.severity)
    source: str | None = None  # the `source` field; default: the machine
    machine: str | None = None  # the machine tag; default: the device's

    @field_validator("table", mode="before")
    @classmethod
    def _known_table(cls, value: Any) -> Any:
        return _choice(value, Table, "table")

    @field_validator("address")
    @classmethod
    def _address_in_range(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(
                f"address {value} is outside 0..65535: use the 0-based protocol address "
                "(a manual's 40001 is holding address 0)"
            )
        return value

    @field_validator("bit")
    @classmethod
    def _bit_in_range(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 15:
            raise ValueError(f"bit {value} is outside 0..15: a register has 16 bits, 0 = LSB")
        return value

    @field_validator("equals", "mask")
    @classmethod
    def _word_in_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = 1 if info.field_name == "mask" else 0
        if value is not None and not low <= value <= 65535:
            raise ValueError(
                f"{info.field_name} {value} is outside {low}..65535 (0x{low:X}..0xFFFF): "
                "a register holds 16 bits"
            )
        return value

    @field_validator("severity")
    @classmethod
    def _severity_in_range(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError(
                f"severity {value} is outside 1..1000 (OPC UA's scale: 1-500 low, 501-800 "
                "high, 801-1000 critical): use e.g. 700"
            )
        return value

    @model_validator(mode="after")
    def _one_test(self) -> Alarm:
        tests = [n for n in ("bit", "equals", "mask") if getattr(self, n) is not None]
        if self.table.holds_bits and tests:
            raise ValueError(f"a {self.table} is one bit already: remove {' and '.join(tests)}")
        if not self.table.holds_bits and len(tests) != 1:
            raise ValueError(
                f"an alarm read from the {self.table} table needs exactly one of bit: 0..15 "
                "(one bit of the word), equals: VALUE (the whole word equals it) or mask: BITS "
                f"(any of them set); it has {', '.join(tests) or 'none'}"
            )
        return self

    def active(self, word: int) -> bool:
        """Whether the alarm is active, given its register's word (or its bit, 0 or 1)."""
        if self.bit is not None:
            return bool(word >> self.bit & 1)
        if self.equals is not None:
            return word == self.equals
        if self.mask is not None:
            return bool(word & self.mask)
        return bool(word)

    def where(self, unit: int) -> str:
        """Where the alarm is read, as its `condition_id`: unit/table/address and the test."""
        test = (
            f".{self.bit}"
            if self.bit is not None
            else f"={self.equals}"
            if self.equals is not None
            else f"&0x{self.mask:04X}"
            if self.mask is not None
            else ""
        )
        return f"{unit}/{self.table}/{self.address}{test}"


class Device(_Strict):
    """One Modbus unit id behind the endpoint, with its read limits and tags."""

    unit: int = 1
    machine: str
    line: str | None = None
    max_registers_per_read: int = MAX_REGISTERS_PER_READ
    max_bits_per_read: int = MAX_BITS_PER_READ
    max_gap: int = 0
    # None: the connector's timeout_s. Slow serial devices behind a gateway need more.
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0, le=5)
    pause_s: float = Field(default=0.0, ge=0, le=10)
    max_in_flight: int = 1  # requests outstanding to this unit at once (Modbus TCP only)
    # PLC alarms read in the same requests as the tags (connectors/modbus/alarms.py)
    alarms: list[Alarm] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list, validate_default=True)

    @field_validator("unit")
    @classmethod
    def _unit_in_range(cls, value: int) -> int:
        if not (0 <= value <= 247 or value == 255):
            raise ValueError(f"unit {value} is not a Modbus unit id: use {_VALID_UNITS}")
        return value

    @field_validator("max_registers_per_read")
    @classmethod
    def _register_limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_REGISTERS_PER_READ:
            raise ValueError(
                f"max_registers_per_read {value} is outside 1..{MAX_REGISTERS_PER_READ}: "
                f"Modbus reads at most {MAX_REGISTERS_PER_READ}; use the device's own limit"
            )
        return value

    @field_validator("max_bits_per_read")
    @classmethod
    def _bit_limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_BITS_PER_READ:
            raise ValueError(
                f"max_bits_per_read {value} is outside 1..{MAX_BITS_PER_READ}: "
                f"Modbus reads at most {MAX_BITS_PER_READ}; use the device's own limit"
            )
        return value

    @field_validator("max_gap")
    @classmethod
    def _gap_not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"max_gap {value} is negative: use 0 to merge only adjacent tags")
        return value

    @field_validator("max_in_flight")
    @classmethod
    def _unit_in_flight(cls, value: int, info: ValidationInfo) -> int:
        if not 1 <= value <= MAX_IN_FLIGHT:
            raise ValueError(
                f"max_in_flight {value} is outside 1..{MAX_IN_FLIGHT}: use 1 (one request at "
                "a time, what every device accepts) or what the device's manual allows"
            )
        if value > 1 and info.data.get("pause_s"):
            raise ValueError(
                "max_in_flight above 1 cannot keep pause_s between requests: "
                "set max_in_flight: 1 or remove pause_s"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags_fit(cls, tags: list[Tag], info: ValidationInfo) -> list[Tag]:
        if not tags and not info.data.get("alarms"):
            raise ValueError(
                "a device needs at least one tag or alarm: add tags or remove the device"
            )
        limit = info.data.get("max_registers_per_read")
        for tag in tags:
            if limit is not None and not tag.table.holds_bits and tag.width > limit:
                raise ValueError(
                    f"{tag.signal} is a {tag.type} ({tag.width} registers) but "
                    f"max_registers_per_read is {limit}: raise the limit or change the type"
                )
        _refuse_overlaps(tags)
        return tags


def _refuse_overlaps(tags: list[Tag]) -> None:
    """Two tags reading the same register are a typo, except distinct bits of one register."""
    for table in Table:
        spans = sorted((t for t in tags if t.table is table), key=lambda t: t.address)
        for i, tag in enumerate(spans):
            for other in spans[i + 1 :]:
                if other.address >= tag.address + tag.width:
                    break
                both_bits = tag.type is DataType.BIT and other.type is DataType.BIT
                if both_bits and tag.bit != other.bit:
                    continue
                raise ValueError(
                    f"{tag.signal} ({table} {tag.address}, {tag.width} wide) and "
                    f"{other.signal} ({table} {other.address}) overlap: "
                    "fix one address or type"
                )


def _unique_conditions(devices: list[Device]) -> None:
    """One condition name per machine: it is how a reader tells its alarms apart."""
    seen: dict[tuple[str | None, str, str], int] = {}
    for index, device in enumerate(devices):
        for alarm in device.alarms:
            key = (device.line, alarm.machine or device.machine, alarm.condition)
            if key in seen:
                where = "twice" if seen[key] == index else f"in devices[{seen[key]}] too"
                raise ValueError(
                    f"alarm {alarm.condition!r} of machine {key[1]!r} is defined {where} "
                    f"(devices[{index}]): rename one"
                )
            seen[key] = index


class Config(_Strict):
    """One Modbus TCP endpoint and the devices (unit ids) polled through it."""

    type: Literal["modbus"]
    name: str
    url: str
    serial: Serial | None = None
    # None: DEFAULT_IN_FLIGHT for Modbus TCP, 1 for RTU (its frames carry no transaction id)
    max_in_flight: int | None = None
    timeout_s: float = 1.0
    # A device's timeout grows to twice its slowest recent answer (late ones too), up to this.
    timeout_max_s: float = 10.0
    # The device closes the connection after each answer: one request per connection from
    # the start (it is also found out while running).
    close_after_answer: bool = False
    poll_interval_s: float = 1.0
    reconnect: Reconnect = Reconnect()
    devices: list[Device]

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("serial")
    @classmethod
    def _serial_only_for_serial(cls, value: Serial | None, info: ValidationInfo) -> Serial | None:
        url = info.data.get("url")
        if value is not None and url is not None and parse_url(url).transport != Transport.SERIAL:
            raise ValueError("serial settings only apply to a modbus+serial:// url; remove them")
        return value

    @field_validator("max_in_flight")
    @classmethod
    def _connection_in_flight(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        if not 1 <= value <= MAX_IN_FLIGHT:
            raise ValueError(
                f"max_in_flight {value} is outside 1..{MAX_IN_FLIGHT}: use 1 for a device that "
                f"serves one request at a time, or leave it out ({DEFAULT_IN_FLIGHT})"
            )
        url = info.data.get("url")
        if value > 1 and url is not None and parse_url(url).transport is not Transport.TCP:
            raise ValueError(
                "RTU frames carry no transaction id, so only one request can be in flight: "
                "remove max_in_flight or set it to 1"
            )
        return value

    @field_validator("timeout_s", "poll_interval_s")
    @classmethod
    def _positive_seconds(cls, value: float, info: ValidationInfo) -> float:
        if value <= 0:
            raise ValueError(f"{info.field_name} must be > 0 (got {value}): use e.g. 1.0")
        return value

    @field_validator("timeout_max_s")
    @classmethod
    def _max_not_below_timeout(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("timeout_s")
        if low is not None and value < low:
            raise ValueError(
                f"timeout_max_s ({value}) is below timeout_s ({low}): raise it, or set it "
                "equal to timeout_s to keep the timeout fixed"
            )
        return value

    @field_validator("devices")
    @classmethod
    def _unique_signals(cls, devices: list[Device]) -> list[Device]:
        if not devices:
            raise ValueError("a modbus connector needs at least one device: add one")
        seen: dict[tuple[str | None, str, str], int] = {}
        for index, device in enumerate(devices):
            for tag in device.tags:
                key = (device.line, device.machine, tag.signal)
                if key in seen:
                    where = "twice" if seen[key] == index else f"in devices[{seen[key]}] too"
                    raise ValueError(
                        f"signal {tag.signal!r} of machine {device.machine!r} is defined "
                        f"{where} (devices[{index}]): rename one"
                    )
                seen[key] = index
        _unique_conditions(devices)
        return devices

    @property
    def link(self) -> Link:
        """Where and how requests go (TCP, RTU over TCP, serial)."""
        return parse_url(self.url)

    @property
    def host(self) -> str:
        return self.link.host

    @property
    def port(self) -> int:
        return self.link.port

    @property
    def in_flight(self) -> int:
        """Requests outstanding on the connection at most (1 for RTU framing)."""
        if self.link.transport is not Transport.TCP:
            return 1
        return self.max_in_flight or DEFAULT_IN_FLIGHT

    def device_timeout(self, device: Device) -> float:
        return device.timeout_s or self.timeout_s

    def device_timeout_max(self, device: Device) -> float:
        """The longest the device's timeout grows to (never below its own timeout_s)."""
        return max(self.timeout_max_s, self.device_timeout(device))
