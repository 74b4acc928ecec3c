"""Every tag a client can read from the simulated line, with its exact address.

The lead generates the connector config for the sim line and the register map of
docs/simulator.md from this, so it is derived from the same spec the servers are built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from plc_sim.machines import SignalKind
from plc_sim.spec import BIT_TABLES, LineSpec

OPCUA_NAMESPACE_INDEX = 2  # the server's own URI is 1; the line's is the first one registered


def opcua_node_id(line: str, machine: str, signal: str) -> str:
    """The node id of a signal as a client writes it."""
    return f"ns={OPCUA_NAMESPACE_INDEX};s={line}.{machine}.{signal}"


@dataclass(frozen=True, slots=True)
class ExposedTag:
    """One readable tag: OPC UA tags have `node_id`; Modbus tags the fields from `unit_id` on.

    `kind` is analog, total (continuous counter), count (integer counter), state, flag or command
    (writable: the run/stop coil). Modbus value = raw * scale; word_order as in registers.py.
    """

    line: str
    machine: str
    signal: str
    kind: str
    unit: str
    min: float
    max: float
    protocol: Literal["opcua", "modbus"]
    writable: bool
    node_id: str | None = None
    unit_id: int | None = None
    table: str | None = None
    address: int | None = None
    dtype: str | None = None
    word_order: str | None = None
    scale: float | None = None


def exposed_tags(spec: LineSpec) -> list[ExposedTag]:
    """All tags of the line in file order."""
    tags = []
    for name, machine in spec.machines.items():
        for signal, s in machine.signals.items():
            kind = spec.signal_kind(name, signal)
            tag = partial(
                ExposedTag,
                line=spec.line,
                machine=name,
                signal=signal,
                kind=kind.value,
                unit=s.unit,
                min=s.min,
                max=s.max,
                protocol=machine.protocol,
            )
            mb = s.modbus
            if mb is None:
                node_id = opcua_node_id(spec.line, name, signal)
                tags.append(tag(writable=False, node_id=node_id))
                continue
            bits = mb.table in BIT_TABLES
            tags.append(
                tag(
                    writable=kind is SignalKind.COMMAND,
                    unit_id=machine.unit_id,
                    table=mb.table,
                    address=mb.address,
                    dtype="bool" if bits else mb.dtype,
                    word_order=None if bits else mb.word_order,
                    scale=None if bits else mb.scale,
                )
            )
    return tags
