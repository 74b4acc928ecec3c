"""Sparkplug B: the edge node's session state and the payloads it publishes, and the host side
that turns those payloads back into samples.

Payloads are the specification's protobuf messages (uns.sparkplug_schema). The
mapping onto the data model:

    spBv1.0/GROUP/NBIRTH/NODE            bdSeq, Node Control/Rebirth
    spBv1.0/GROUP/DBIRTH/NODE/MACHINE    one Double metric per signal (alias, engUnit), and
                                         Properties/Site, Properties/Line (String)
    spBv1.0/GROUP/DDATA/NODE/MACHINE     samples by alias, each with its own timestamp (ms);
                                         a tag that is not good carries a Quality property
                                         (OPC DA codes: 192 good, 64 uncertain, 0 bad)
    spBv1.0/GROUP/DDEATH/NODE/MACHINE    every tag of the machine went bad (its PLC is down)
    spBv1.0/GROUP/NDEATH/NODE            the MQTT will, and the last message of a clean stop

Aliases are a hash of (machine, signal): unique within the edge node (a collision is refused)
and the same in every session and every run, so a host that learned them from any birth decodes
data the broker kept from an earlier session right.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.private_files import replace_private
from core.sample import Point, Quality, Sample
from core.schema import telemetry_point
from core.units import unit_of
from uns.sparkplug_schema import BOOLEAN, DOUBLE, INT32, INT64, STRING, Metric, Payload
from uns.sparkplug_values import Element, elements, scalar_elements, signal_name

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
SITE = "Properties/Site"
LINE = "Properties/Line"
ENG_UNIT = "engUnit"
QUALITY = "Quality"
_OPC_QUALITY = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}
_FROM_OPC = {code: quality for quality, code in _OPC_QUALITY.items()}

log = logging.getLogger(__name__)

Message = tuple[str, bytes]  # (topic, payload)


class SparkplugError(ValueError):
    """A payload or topic that is not Sparkplug B as this module reads it."""


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    return "/".join((NAMESPACE, group, kind, node, *((device,) if device else ())))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _set_value(metric: Metric, sample: Sample | None) -> None:
    metric.datatype = DOUBLE
    if sample is None or math.isnan(sample.value):
        metric.is_null = True
    else:
        metric.double_value = sample.value
    if sample is not None:
        metric.timestamp = sample.source_ts // 1_000_000
        if sample.quality != Quality.GOOD:
            metric.properties.keys.append(QUALITY)
            prop = metric.properties.values.add()
            prop.type = INT32
            prop.int_value = _OPC_QUALITY[sample.quality]


@dataclass(slots=True)
class _Device:
    site: str
    line: str
    signals: dict[str, int] = field(default_factory=dict)  # signal -> alias
    last: dict[str, Sample] = field(default_factory=dict)
    alive: bool = False


class EdgeNode:
    """The state of one Sparkplug edge node: aliases, the devices it has announced, seq and
    bdSeq. Every method returns the messages to publish, in order; the caller publishes them in
    that order (seq is assigned here)."""

    def __init__(self, group: str, node: str) -> None:
        self.group = group
        self.node = node
        self.bd_seq = -1
        self._seq = 0
        self._aliases: dict[int, tuple[str, str]] = {}
        self._devices: dict[str, _Device] = {}

    def new_session(self) -> None:
        """A new MQTT connection: the next bdSeq (0-255), devices to be born again."""
        self.bd_seq = (self.bd_seq + 1) % 256
        for device in self._devices.values():
            device.alive = False

    def death(self) -> Message:
        """NDEATH with this session's bdSeq: the will, and the last message of a clean stop."""
        payload = Payload(timestamp=_now_ms())
        payload.metrics.add(name=BD_SEQ, datatype=INT64, long_value=self.bd_seq)
        return topic(self.group, "NDEATH", self.node), payload.SerializeToString()

    def birth(self) -> list[Message]:
        """NBIRTH (seq 0) and a DBIRTH for every device known so far: at the start of a session
        and on a host's rebirth request."""
        self._seq = 0
        payload = Payload(timestamp=_now_ms(), seq=0)
        payload.metrics.add(name=BD_SEQ, datatype=INT64, long_value=self.bd_seq)
        payload.metrics.add(name=REBIRTH, datatype=BOOLEAN, boolean_value=False)
        messages = [(topic(self.group, "NBIRTH", self.node), payload.SerializeToString())]
        for machine in self._devices:
            messages.append(self._device_birth(machine))
        return messages

    def data(self, samples: Iterable[Sample]) -> list[Message]:
        """DDATA per machine for a batch (after any DBIRTH it needs); DDEATH for a machine whose
        samples in the batch are all bad (its PLC went down)."""
        by_machine: dict[str, list[Sample]] = {}
        for sample in samples:
            by_machine.setdefault(sample.machine, []).append(sample)
        messages: list[Message] = []
        for machine, batch in by_machine.items():
            device = self._device(machine, batch[0])
            new = {s.signal for s in batch} - device.signals.keys()
            for signal in sorted(new):
                device.signals[signal] = self._alias(machine, signal)
            if new or not device.alive:
                messages.append(self._device_birth(machine))
            messages.append(self._device_data(machine, batch))
            device.last.update((s.signal, s) for s in batch)
            if all(s.quality == Quality.BAD for s in batch):
                messages.append(self._device_death(machine))
        return messages

    def _device(self, machine: str, sample: Sample) -> _Device:
        device = self._devices.get(machine)
        if device is None:
            device = self._devices[machine] = _Device(sample.site, sample.line)
        elif (device.site, device.line) != (sample.site, sample.line):
            raise SparkplugError(
                f"machine {machine!r} is on line {device.line!r} of site {device.site!r} and on "
                f"line {sample.line!r} of site {sample.site!r}; a Sparkplug device id must be "
                "unique in its edge node: publish each line from its own node (?node=NAME)"
            )
        return device

    def _alias(self, machine: str, signal: str) -> int:
        digest = hashlib.blake2b(f"{machine}/{signal}".encode(), digest_size=8).digest()
        alias = int.from_bytes(digest) >> 12  # 52 bits: exact in a JavaScript number too
        held = self._aliases.setdefault(alias, (machine, signal))
        if held != (machine, signal):
            raise SparkplugError(f"alias collision between {held} and {(machine, signal)}")
        return alias

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _device_birth(self, machine: str) -> Message:
        device = self._devices[machine]
        device.alive = True
        payload = Payload(timestamp=_now_ms(), seq=self._next_seq())
        payload.metrics.add(name=SITE, datatype=STRING, string_value=device.site)
        payload.metrics.add(name=LINE, datatype=STRING, string_value=device.line)
        for signal, alias in device.signals.items():
            metric = payload.metrics.add(name=signal, alias=alias)
            _set_value(metric, device.last.get(signal))
            unit = unit_of(signal)
            if unit:
                metric.properties.keys.append(ENG_UNIT)
                metric.properties.values.add(type=STRING, string_value=unit)
        return topic(self.group, "DBIRTH", self.node, machine), payload.SerializeToString()

    def _device_data(self, machine: str, batch: Sequence[Sample]) -> Message:
        aliases = self._devices[machine].signals
        payload = Payload(timestamp=_now_ms(), seq=self._next_seq())
        for sample in batch:
            _set_value(payload.metrics.add(alias=aliases[sample.signal]), sample)
        return topic(self.group, "DDATA", self.node, machine), payload.SerializeToString()

    def _device_death(self, machine: str) -> Message:
        self._devices[machine].alive = False
        payload = Payload(timestamp=_now_ms(), seq=self._next_seq())
        return topic(self.group, "DDEATH", self.node, machine), payload.SerializeToString()


def is_rebirth_request(payload: bytes) -> bool:
    """Whether an NCMD payload asks this node to publish its births again."""
    try:
        message = Payload.FromString(payload)
    except Exception:  # protobuf raises DecodeError or others on garbage
        return False
    return any(m.name == REBIRTH and m.boolean_value for m in message.metrics)


def rebirth_request() -> bytes:
    """The NCMD payload a host sends to ask a node for its births."""
    payload = Payload(timestamp=_now_ms())
    payload.metrics.add(name=REBIRTH, datatype=BOOLEAN, boolean_value=True)
    return payload.SerializeToString()


@dataclass(slots=True)
class _Metric:
    """What a DBIRTH said of one metric: the signal it is stored as, its datatype, and the
    element suffixes its last value had (one "" for a scalar, "[i]" per array element)."""

    signal: str
    datatype: int
    elements: tuple[str, ...]


@dataclass(slots=True)
class _Known:
    site: str
    line: str
    metrics: dict[str, _Metric]  # metric name -> how it is stored
    aliases: dict[int, str]  # alias -> metric name


@dataclass(slots=True)
class Readings:
    """What a message holds for the data model: numbers as samples, texts as telemetry points
    (core.schema.telemetry_point), and the metrics refused ("name: why")."""

    samples: list[Sample] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples) + len(self.points)

    def extend(self, other: Readings) -> None:
        self.samples += other.samples
        self.points += other.points
        self.refused += other.refused


class Host:
    """A Sparkplug primary application's view of the edge nodes: per (group, node, device) the
    metrics its DBIRTH declared (name, alias, datatype, engUnit), per node the bdSeq of its
    NBIRTH. With a file, what the births taught survives a restart: a worker killed with data
    still queued for it decodes that data when it is back, even if the edge node is gone by
    then."""

    def __init__(self, file: Path | None = None) -> None:
        self._devices: dict[tuple[str, str, str], _Known] = {}
        self._bd_seq: dict[tuple[str, str], int] = {}
        self._file = file
        if file is not None and file.exists():
            try:
                for item in json.loads(file.read_text(encoding="utf-8")):
                    key = (item["group"], item["node"], item["device"])
                    self._devices[key] = _from_json(item)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("%s: unreadable, births are learned again: %s", file, exc)

    def _save(self) -> None:
        if self._file is None:
            return
        items = [
            {"group": g, "node": n, "device": d, "site": k.site, "line": k.line}
            | {"aliases": {str(alias): name for alias, name in k.aliases.items()}}
            | {"metrics": {name: [m.signal, m.datatype] for name, m in k.metrics.items()}}
            for (g, n, d), k in self._devices.items()
        ]
        replace_private(self._file, json.dumps(items))

    def knows(self, group: str, node: str, device: str) -> bool:
        return (group, node, device) in self._devices

    def node_born(self, group: str, node: str, payload: bytes) -> None:
        """Take an NBIRTH: the bdSeq that this node's NDEATH will carry."""
        for metric in _parse(payload).metrics:
            if metric.name == BD_SEQ:
                self._bd_seq[(group, node)] = metric.long_value or metric.int_value

    def learn(self, group: str, node: str, device: str, payload: bytes) -> Readings:
        """Take a DBIRTH: site, line and every metric's alias, datatype and signal name; and
        the values it carries."""
        message = _parse(payload)
        site = line = ""
        known = _Known("", "", {}, {})
        refused: list[str] = []
        for metric in message.metrics:
            if metric.name == SITE:
                site = metric.string_value
            elif metric.name == LINE:
                line = metric.string_value
            elif not metric.name.startswith(_NOT_DATA):
                refused += _declare(known, metric)
        known.site, known.line = site or group, line or node
        if self._devices.get((group, node, device)) != known:
            self._devices[(group, node, device)] = known
            self._save()
        readings = self.readings(group, node, device, payload, birth=True)
        readings.refused[:0] = refused
        return readings

    def readings(
        self, group: str, node: str, device: str, payload: bytes, *, birth: bool = False
    ) -> Readings:
        """The readings of a DDATA (or DBIRTH) whose DBIRTH was learned (`knows`); an alias
        that birth did not declare raises SparkplugError."""
        known = self._devices[(group, node, device)]
        message = _parse(payload)
        out = Readings()
        for metric in message.metrics:
            name = metric.name or known.aliases.get(metric.alias)
            if name is None:
                raise SparkplugError(f"DDATA of {node}/{device} has unknown alias {metric.alias}")
            declared = known.metrics.get(name)
            if declared is None:
                if not birth and not name.startswith(_NOT_DATA):
                    out.refused.append(f"{name}: not declared in the DBIRTH")
                continue
            if birth and metric.is_null:
                continue  # declared with no value yet: not a reading (a null DDATA is bad)
            ts = (metric.timestamp if metric.HasField("timestamp") else message.timestamp) * 10**6
            try:
                values = elements(metric, metric.datatype or declared.datatype)
            except ValueError as exc:  # UnsupportedDatatype, or an array of the wrong length
                out.refused.append(f"{name}: {exc}")
                continue
            declared.elements = tuple(suffix for suffix, _ in values)
            _add(out, known, device, declared.signal, values, _quality(metric), ts)
        return out

    def device_death(self, group: str, node: str, device: str) -> tuple[Readings, str]:
        """A DDEATH: every signal of the device bad now, and why."""
        reason = f"{group}/{node}/{device}: DDEATH (the device is offline)"
        return self._mark_bad([(device, self._devices.get((group, node, device)))]), reason

    def node_death(self, group: str, node: str, payload: bytes) -> tuple[Readings, str] | None:
        """An NDEATH: every signal of every device of the node bad now, and why; None for the
        death of a session that an NBIRTH since has replaced (its bdSeq is not the current)."""
        bd_seq = next((m.long_value for m in _parse(payload).metrics if m.name == BD_SEQ), None)
        current = self._bd_seq.get((group, node))
        if bd_seq is not None and current is not None and bd_seq != current:
            return None
        devices = [(d, k) for (g, n, d), k in self._devices.items() if (g, n) == (group, node)]
        reason = f"{group}/{node}: NDEATH (bdSeq {bd_seq}: the edge node is offline)"
        return self._mark_bad(devices), reason

    def _mark_bad(self, devices: Iterable[tuple[str, _Known | None]]) -> Readings:
        out = Readings()
        now = time.time_ns()  # a will's own timestamp is when its session began
        for device, known in devices:
            if known is None:
                continue
            for declared in known.metrics.values():
                for suffix in declared.elements:
                    signal = declared.signal + suffix
                    out.samples.append(
                        Sample(known.line, device, signal, math.nan, Quality.BAD, now, known.site)
                    )
        return out


# Metrics that are the session's, not a device's data: not stored.
_NOT_DATA = ("Properties/", "Node Control/", "Device Control/", BD_SEQ)


def _declare(known: _Known, metric: Metric) -> list[str]:
    """Add a DBIRTH metric to `known`; the reason when it cannot be stored."""
    unit = next(
        (
            v.string_value
            for k, v in zip(metric.properties.keys, metric.properties.values, strict=False)
            if k == ENG_UNIT
        ),
        "",
    )
    signal = signal_name(metric.name, unit)
    taken = {m.signal for m in known.metrics.values()}
    if not signal or signal in taken:
        why = "no signal name left" if not signal else f"its signal {signal!r} is taken"
        return [f"{metric.name}: {why} (docs/unified-namespace.md, names)"]
    known.metrics[metric.name] = _Metric(signal, metric.datatype, scalar_elements(metric.datatype))
    if metric.HasField("alias"):
        known.aliases[metric.alias] = metric.name
    return []


def _quality(metric: Metric) -> Quality:
    for key, prop in zip(metric.properties.keys, metric.properties.values, strict=False):
        if key == QUALITY:
            return _FROM_OPC.get(prop.int_value, Quality.UNCERTAIN)
    return Quality.GOOD


def _add(
    out: Readings,
    known: _Known,
    device: str,
    signal: str,
    values: list[Element],
    quality: Quality,
    ts: int,
) -> None:
    """One reading per element: a number as a sample, a text as a telemetry point, null as a
    bad sample."""
    for suffix, value in values:
        if isinstance(value, str):
            key = (known.site, known.line, device, signal + suffix)
            out.points.append(telemetry_point(key, ts, quality, text=value))
        else:
            number = math.nan if value is None else value
            out.samples.append(
                Sample(known.line, device, signal + suffix, number, quality, ts, known.site)
            )


def _from_json(item: dict[str, Any]) -> _Known:
    """A device of the births file; one written before datatypes were kept has only the alias
    map, and its metrics (all Double then) are read by the field that holds their value."""
    if "metrics" not in item:
        signals = {int(alias): name for alias, name in item["signals"].items()}
        metrics = {name: _Metric(name, 0, ("",)) for name in signals.values()}
        return _Known(item["site"], item["line"], metrics, signals)
    metrics = {
        name: _Metric(str(signal), int(kind), scalar_elements(int(kind)))
        for name, (signal, kind) in item["metrics"].items()
    }
    aliases = {int(alias): str(name) for alias, name in item["aliases"].items()}
    return _Known(item["site"], item["line"], metrics, aliases)


def _parse(payload: bytes) -> Payload:
    try:
        return Payload.FromString(payload)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise SparkplugError(f"not a Sparkplug B payload: {exc}") from None
