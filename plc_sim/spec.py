"""The line file: what machines a line has, their signals, dynamics and protocol mapping.

Students copy and edit the YAML file, so every mistake must come back as one message that names
the file, the line, the field and the fix (`LineSpecError`), never as a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from plc_sim.faults import FaultError, check_fault
from plc_sim.machines import (
    MACHINE_TYPES,
    AirCompressorParams,
    CapperParams,
    ConveyorParams,
    EnergyMeterParams,
    FillerParams,
    Params,
    PasteurizerParams,
    SignalKind,
)
from plc_sim.registers import ALARM_BITS, DTYPE_LIMITS, MAX_ALARM_BITS, REGISTER_WIDTH

DEFAULT_LINE = Path(__file__).parent / "lines" / "food_beverage.yaml"
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"  # no dots: node ids join names with dots

# unit symbol of the line file -> (UNECE Rec 20 common code, display name, description); the
# display names are spelled as core/units.py spells them (tests/shopfloor/test_units.py)
UNITS: dict[str, tuple[str, str, str]] = {
    "degC": ("CEL", "°C", "degree Celsius"),
    "A": ("AMP", "A", "ampere"),
    "V": ("VLT", "V", "volt"),
    "Hz": ("HTZ", "Hz", "hertz"),
    "bar": ("BAR", "bar", "bar [unit of pressure]"),
    "kW": ("KWT", "kW", "kilowatt"),
    "kWh": ("KWH", "kWh", "kilowatt hour"),
    "%": ("P1", "%", "percent"),
    "mm/s": ("C16", "mm/s", "millimetre per second"),
    "Nm": ("NU", "N·m", "newton metre"),
    "mL": ("MLT", "mL", "millilitre"),
    "L/h": ("E32", "L/h", "litre per hour"),
    "1/min": ("C94", "1/min", "reciprocal minute"),
    "m3/min": ("G53", "m³/min", "cubic metre per minute"),
    "h": ("HUR", "h", "hour"),
    "1": ("C62", "1", "one"),
}

Table = Literal["holding", "input", "coil", "discrete"]
BIT_TABLES = ("coil", "discrete")


class LineSpecError(Exception):
    """The line file cannot be used; the message says where and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ModbusMap(_Strict):
    """Where a signal lives on its device: engineering value = raw * scale."""

    table: Table
    address: int = Field(ge=0, le=65535)
    dtype: Literal["int16", "uint16", "int32", "uint32", "float32", "bool"] | None = Field(
        None, alias="type"
    )
    word_order: Literal["ABCD", "CDAB", "BADC", "DCBA"] = Field("ABCD", alias="order")
    scale: float = 1.0

    @property
    def width(self) -> int:
        """Registers (or bits) the value occupies."""
        return REGISTER_WIDTH.get(self.dtype or "bool", 1)


class SignalSpec(_Strict):
    unit: str
    min: float
    max: float
    noise: float = Field(0.0, ge=0)  # sensor noise sigma in engineering units
    modbus: ModbusMap | None = None

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str) -> str:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; use one of: {', '.join(UNITS)}")
        return unit


class MachineSpec(_Strict):
    """One machine; `kind` picks its process model and the type of `params`."""

    kind: str
    protocol: Literal["opcua", "modbus"]
    unit_id: int | None = Field(None, ge=1, le=247)
    description: str = ""
    params: Params
    signals: dict[str, SignalSpec]


# One spec per machine kind of MACHINE_TYPES, in its order (a test keeps them in step): `kind`
# is the discriminator's tag and `params` has the kind's own parameter model, all defaults.
class PasteurizerSpec(MachineSpec):
    kind: Literal["pasteurizer"]
    params: PasteurizerParams = Field(default_factory=PasteurizerParams)


class ConveyorSpec(MachineSpec):
    kind: Literal["conveyor"]
    params: ConveyorParams = Field(default_factory=ConveyorParams)


class FillerSpec(MachineSpec):
    kind: Literal["filler"]
    params: FillerParams = Field(default_factory=FillerParams)


class CapperSpec(MachineSpec):
    kind: Literal["capper"]
    params: CapperParams = Field(default_factory=CapperParams)


class AirCompressorSpec(MachineSpec):
    kind: Literal["air_compressor"]
    params: AirCompressorParams = Field(default_factory=AirCompressorParams)


class EnergyMeterSpec(MachineSpec):
    kind: Literal["energy_meter"]
    params: EnergyMeterParams = Field(default_factory=EnergyMeterParams)


# the union of the kinds, discriminated by `kind`
AnyMachineSpec = Annotated[
    PasteurizerSpec | ConveyorSpec | FillerSpec | CapperSpec | AirCompressorSpec | EnergyMeterSpec,
    Field(discriminator="kind"),
]


class ScheduledFault(_Strict):
    at_s: float = Field(ge=0)
    machine: str
    fault: str
    severity: float = Field(1.0, gt=0, le=1)
    duration_s: float | None = Field(None, gt=0)  # None: until the end of the run


class ScheduledStop(_Strict):
    """A planned stop the line plays by itself: the machine stands idle with the reason."""

    at_s: float = Field(ge=0)
    machine: str
    reason: Literal["cleaning", "changeover", "maintenance"]
    duration_s: float = Field(gt=0)


class LineSpec(_Strict):
    line: str = Field(pattern=NAME_PATTERN)
    site: str = "default"
    tick_s: float = Field(1.0, gt=0, le=60)  # simulation step and publish period
    namespace_uri: str = "urn:shopfloor:plc_sim"
    machines: dict[str, AnyMachineSpec] = Field(min_length=1)
    faults: list[ScheduledFault] = []
    stops: list[ScheduledStop] = []

    @model_validator(mode="after")
    def _consistent(self) -> LineSpec:
        problems = line_problems(self)
        if problems:
            text = "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems)
            raise PydanticCustomError("line_spec", "{text}", {"text": text, "problems": problems})
        return self

    def signal_kind(self, machine: str, signal: str) -> SignalKind:
        return MACHINE_TYPES[self.machines[machine].kind].SIGNALS[signal]


Loc = tuple[str | int, ...]


def line_problems(spec: LineSpec) -> list[tuple[Loc, str]]:
    """Cross-field checks pydantic cannot express: names, mappings, overlaps, references."""
    problems: list[tuple[Loc, str]] = []
    for name, machine in spec.machines.items():
        problems += _machine_problems(spec, name, machine)
    problems += _overlaps(spec)
    for i, item in enumerate(spec.faults):
        kinds = {name: m.kind for name, m in spec.machines.items()}
        try:
            check_fault(kinds, item.machine, item.fault, item.severity)
        except FaultError as exc:
            problems.append((("faults", i), str(exc)))
    for i, stop in enumerate(spec.stops):
        if stop.machine not in spec.machines:
            known = ", ".join(spec.machines)
            problems.append(
                (("stops", i, "machine"), f"no machine {stop.machine!r}; machines: {known}")
            )
    return problems


def _machine_problems(spec: LineSpec, name: str, m: MachineSpec) -> list[tuple[Loc, str]]:
    at: Loc = ("machines", name)
    problems: list[tuple[Loc, str]] = []
    if not re.match(NAME_PATTERN, name):
        problems.append((at, "machine names are letters, digits, _ or -; rename it"))
    if m.protocol == "modbus" and m.unit_id is None:
        problems.append((at, "a modbus machine needs `unit_id:` (1..247); add it"))
    if m.protocol == "opcua" and m.unit_id is not None:
        problems.append(((*at, "unit_id"), "only modbus machines have a unit id; remove it"))
    catalogue = MACHINE_TYPES[m.kind].SIGNALS
    if "state" not in m.signals:
        problems.append(((*at, "signals"), "every machine needs a `state` signal; add it"))
    for signal, s in m.signals.items():
        where = (*at, "signals", signal)
        if signal not in catalogue:
            known = ", ".join(catalogue)
            problems.append((where, f"a {m.kind} has no signal {signal!r}; known: {known}"))
            continue
        problems += _signal_problems(where, m, s, catalogue[signal])
    for field, kinds in MACHINE_TYPES[m.kind].REFERENCES.items():
        value = getattr(m.params, field)
        for ref in [value] if isinstance(value, str) else value:
            other = spec.machines.get(ref)
            if other is None or other.kind not in kinds:
                problems.append(
                    (
                        (*at, "params", field),
                        f"{ref!r} is not a machine of kind {' or '.join(kinds)} on this line; "
                        "name one that is",
                    )
                )
    return problems


def _signal_problems(
    where: Loc, machine: MachineSpec, s: SignalSpec, kind: SignalKind
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if s.min >= s.max:
        problems.append(((*where, "min"), f"min ({s.min}) must be below max ({s.max})"))
    if s.noise and kind is not SignalKind.ANALOG:
        problems.append(((*where, "noise"), f"a {kind.value} signal has no noise; remove it"))
    if machine.protocol == "opcua":
        if s.modbus is not None:
            problems.append(
                (
                    (*where, "modbus"),
                    "an opcua machine exposes signals as OPC UA variables; remove `modbus:` "
                    "or set the machine's protocol to modbus",
                )
            )
        return problems
    if s.modbus is None:
        problems.append(
            (where, "a modbus machine needs `modbus: {table, address, type}` for every signal")
        )
        return problems
    return problems + [((*where, "modbus"), msg) for msg in _mapping_problems(s, kind)]


def _mapping_problems(s: SignalSpec, kind: SignalKind) -> list[str]:
    mb = s.modbus
    assert mb is not None
    bits = mb.table in BIT_TABLES
    if kind is SignalKind.COMMAND and mb.table != "coil":
        return ["a command (run/stop) must be a coil, so clients can write it; use table: coil"]
    if mb.table == "discrete" and ALARM_BITS <= mb.address < ALARM_BITS + MAX_ALARM_BITS:
        end = ALARM_BITS + MAX_ALARM_BITS - 1
        return [
            f"discrete {ALARM_BITS}..{end} are the device's alarm bits (docs/simulator.md): "
            "move this signal to another address"
        ]
    if bits:
        if kind not in (SignalKind.FLAG, SignalKind.COMMAND):
            return [f"a {mb.table} holds one bit; put this {kind.value} signal in a register"]
        if mb.dtype not in (None, "bool"):
            return [f"a {mb.table} holds one bit; drop `type` or use bool"]
        return []
    if mb.dtype is None or mb.dtype == "bool":
        return ["registers need `type:` one of int16, uint16, int32, uint32, float32"]
    if mb.scale == 0:
        return ["scale must not be 0 (engineering value = raw * scale)"]
    limits = DTYPE_LIMITS.get(mb.dtype)
    if limits is None:
        return []
    raw = sorted((s.min / mb.scale, s.max / mb.scale))
    if raw[0] < limits[0] or raw[1] > limits[1]:
        return [
            f"range {s.min}..{s.max} at scale {mb.scale} needs raw {raw[0]:g}..{raw[1]:g}, "
            f"beyond {mb.dtype} ({limits[0]}..{limits[1]}); use a coarser scale or a wider type"
        ]
    return []


def _overlaps(spec: LineSpec) -> list[tuple[Loc, str]]:
    """Two signals sharing a register or bit of one device, or two devices sharing a unit id."""
    problems: list[tuple[Loc, str]] = []
    owners: dict[int, str] = {}
    used: dict[tuple[int, str], list[tuple[int, int, str, str]]] = {}
    for name, m in spec.machines.items():
        if m.protocol != "modbus" or m.unit_id is None:
            continue
        if m.unit_id in owners:
            problems.append(
                (
                    ("machines", name, "unit_id"),
                    f"unit id {m.unit_id} is already used by {owners[m.unit_id]}; pick a free one",
                )
            )
        owners.setdefault(m.unit_id, name)
        for signal, s in m.signals.items():
            if s.modbus is not None:
                mb = s.modbus
                block = (mb.address, mb.address + mb.width, name, signal)
                used.setdefault((m.unit_id, mb.table), []).append(block)
    for (_unit, table), blocks in used.items():
        blocks.sort(key=lambda block: block[0])  # stable: on a tie the later line is blamed
        end, first = blocks[0][1], blocks[0][3]
        for start, stop, machine, signal in blocks[1:]:
            if start < end:
                problems.append(
                    (
                        ("machines", machine, "signals", signal, "modbus", "address"),
                        f"{table} address {start} overlaps {first!r} (which ends at {end - 1}); "
                        f"move it to {end} or later",
                    )
                )
            if stop > end:
                end, first = stop, signal
    return problems


def load_line(path: Path | None = None) -> LineSpec:
    """Read and validate a line file (None: the default food-and-beverage line)."""
    path = DEFAULT_LINE if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LineSpecError(f"{path}: cannot read the line file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise LineSpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LineSpecError(f"{path}: a line file is a mapping with `line:` and `machines:`")
    try:
        return LineSpec.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(tree, loc, msg) for loc, msg in _problems_of(exc)]
        raise LineSpecError(f"{path}: invalid line file:\n" + "\n".join(lines)) from None


def _problems_of(exc: ValidationError) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for err in exc.errors():
        loc = _strip_kind_tag(tuple(err["loc"]))
        ctx = err.get("ctx") or {}
        if err["type"] == "line_spec":
            problems += [(loc + tuple(sub), msg) for sub, msg in ctx["problems"]]
        else:
            problems.append((loc, _message(err)))
    return problems


def _strip_kind_tag(loc: Loc) -> Loc:
    """Pydantic puts the discriminator value after the machine name; the file has no such key."""
    if len(loc) > 2 and loc[0] == "machines" and loc[2] in MACHINE_TYPES:
        return loc[:2] + loc[3:]
    return loc


def _message(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if kind == "union_tag_invalid":
        return f"unknown machine kind {ctx.get('tag')!r}; use one of: {', '.join(MACHINE_TYPES)}"
    if kind == "union_tag_not_found":
        return f"missing `kind:`; add one of: {', '.join(MACHINE_TYPES)}"
    return str(err["msg"]).removeprefix("Value error, ")


def _describe(tree: yaml.Node | None, loc: Loc, msg: str) -> str:
    line = _line_of(tree, loc)
    where = ".".join(map(str, loc)) or "(top level)"
    return f"  line {line}: {where}: {msg}" if line else f"  {where}: {msg}"


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """Line number (1-based) of the deepest YAML node on the path `loc`."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line
