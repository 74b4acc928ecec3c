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

from core.private_files import replace_private
from core.sample import Quality, Sample
from core.units import unit_of
from uns.sparkplug_schema import BOOLEAN, DOUBLE, INT32, INT64, STRING, Metric, Payload

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
class _Known:
    site: str
    line: str
    signals: dict[int, str]  # alias -> signal


class Host:
    """What a consumer needs to decode DDATA: the aliases and device properties learned from
    DBIRTHs, per (group, node, device). With a file, what was learned survives a restart: a
    worker killed with data still queued for it decodes that data when it is back, even if the
    edge node is gone by then."""

    def __init__(self, file: Path | None = None) -> None:
        self._devices: dict[tuple[str, str, str], _Known] = {}
        self._file = file
        if file is not None and file.exists():
            try:
                for item in json.loads(file.read_text(encoding="utf-8")):
                    signals = {int(alias): name for alias, name in item["signals"].items()}
                    key = (item["group"], item["node"], item["device"])
                    self._devices[key] = _Known(item["site"], item["line"], signals)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("%s: unreadable, births are learned again: %s", file, exc)

    def _save(self) -> None:
        if self._file is None:
            return
        items = [
            {"group": g, "node": n, "device": d, "site": k.site, "line": k.line}
            | {"signals": {str(alias): name for alias, name in k.signals.items()}}
            for (g, n, d), k in self._devices.items()
        ]
        replace_private(self._file, json.dumps(items))

    def knows(self, group: str, node: str, device: str) -> bool:
        return (group, node, device) in self._devices

    def learn(self, group: str, node: str, device: str, payload: bytes) -> None:
        """Take a DBIRTH: its site, line and alias -> signal map."""
        message = _parse(payload)
        site = line = ""
        signals: dict[int, str] = {}
        for metric in message.metrics:
            if metric.name == SITE:
                site = metric.string_value
            elif metric.name == LINE:
                line = metric.string_value
            elif metric.HasField("alias"):
                signals[metric.alias] = metric.name
        known = _Known(site or group, line or node, signals)
        if self._devices.get((group, node, device)) != known:
            self._devices[(group, node, device)] = known
            self._save()

    def samples(self, group: str, node: str, device: str, payload: bytes) -> list[Sample]:
        """The samples of a DDATA whose DBIRTH was learned (`knows`)."""
        known = self._devices[(group, node, device)]
        out = []
        for metric in _parse(payload).metrics:
            signal = metric.name or known.signals.get(metric.alias)
            if signal is None:
                raise SparkplugError(f"DDATA of {node}/{device} has unknown alias {metric.alias}")
            quality = Quality.GOOD
            for key, prop in zip(metric.properties.keys, metric.properties.values, strict=False):
                if key == QUALITY:
                    quality = _FROM_OPC.get(prop.int_value, Quality.UNCERTAIN)
            value = math.nan if metric.is_null else metric.double_value
            out.append(
                Sample(
                    known.line,
                    device,
                    signal,
                    value,
                    quality,
                    metric.timestamp * 1_000_000,
                    known.site,
                )
            )
        return out


def _parse(payload: bytes) -> Payload:
    try:
        return Payload.FromString(payload)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise SparkplugError(f"not a Sparkplug B payload: {exc}") from None
