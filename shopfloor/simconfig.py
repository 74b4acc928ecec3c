"""The connectors file for a simulated line, derived from the same line file the servers use.

The connectors know nothing of the simulator; this is the one place that translates what the
simulator exposes (plc_sim.tags) into an ordinary connectors file, exactly as an integrator
would write it by hand for real PLCs.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from plc_sim.spec import LineSpec
from plc_sim.tags import ExposedTag, exposed_tags

# The simulator answers reads across the holes in its register map, so reads may span them.
SIM_MAX_GAP = 16


def sim_connectors(spec: LineSpec, host: str, opcua_port: int, modbus_port: int) -> dict[str, Any]:
    """A connectors file (as a dict, ready for YAML) that reads every tag of `spec`."""
    tags = exposed_tags(spec)
    connectors: list[dict[str, Any]] = []
    opcua = [t for t in tags if t.protocol == "opcua"]
    modbus = [t for t in tags if t.protocol == "modbus"]
    interval_ms = max(100, int(spec.tick_s * 1000))
    if opcua:
        connectors.append(
            {
                "type": "opcua",
                "name": f"{spec.line}-opcua",
                "endpoint": f"opc.tcp://{host}:{opcua_port}/shopfloor/",
                "publishing_interval_ms": interval_ms,
                "sampling_interval_ms": max(50, interval_ms // 2),
                "tags": [
                    {"machine": t.machine, "signal": t.signal, "node": t.node_id} for t in opcua
                ],
            }
        )
    if modbus:
        connectors.append(
            {
                "type": "modbus",
                "name": f"{spec.line}-modbus",
                "url": f"modbus://{host}:{modbus_port}",
                "poll_interval_s": spec.tick_s,
                "devices": [
                    _device(machine, list(group))
                    for machine, group in groupby(modbus, key=lambda t: t.machine)
                ],
            }
        )
    return {"site": spec.site, "line": spec.line, "connectors": connectors}


def _device(machine: str, tags: list[ExposedTag]) -> dict[str, Any]:
    return {
        "unit": tags[0].unit_id,
        "machine": machine,
        "max_gap": SIM_MAX_GAP,
        "tags": [_modbus_tag(t) for t in tags],
    }


def _modbus_tag(tag: ExposedTag) -> dict[str, Any]:
    entry: dict[str, Any] = {"signal": tag.signal, "table": tag.table, "address": tag.address}
    if tag.dtype != "bool":
        entry["type"] = tag.dtype
        if tag.word_order not in (None, "ABCD"):
            entry["order"] = tag.word_order
        if tag.scale not in (None, 1.0):
            entry["scale"] = tag.scale
    return entry
