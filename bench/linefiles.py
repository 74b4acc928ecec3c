"""Bench line files: the default food-and-beverage line, copied many times over.

Machine kinds have fixed signal sets, so a bigger line means more machines. Copy k of every
machine is `<machine>_<k>`, its references (a filler's infeed, a meter's loads, ...) point at the
machines of the same copy, and Modbus unit ids are renumbered 1, 2, 3, ... across copies. The
scheduled faults are dropped: a bench measures throughput, not detection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml

from plc_sim.machines import MACHINE_TYPES
from plc_sim.spec import DEFAULT_LINE, LineSpec, load_line

MAX_UNIT_ID = 247


def write_line(
    folder: Path,
    *,
    line: str,
    copies: int,
    tick_s: float,
    only: Literal["opcua", "modbus"] | None = None,
) -> tuple[Path, LineSpec]:
    """Write the line file for `copies` copies of the default line; `only` moves every machine
    to that protocol (an OPC UA-only line drops the register maps). Returns its path and spec."""
    default = yaml.safe_load(DEFAULT_LINE.read_text(encoding="utf-8"))
    machines: dict[str, Any] = {}
    unit_ids = iter(range(1, MAX_UNIT_ID + 1))
    for copy in range(copies):
        for name, machine in default["machines"].items():
            machines[f"{name}_{copy}"] = _copied(machine, copy, only, unit_ids)
    data = {
        **default,
        "line": line,
        "tick_s": tick_s,
        "machines": machines,
        "faults": [],
        "stops": [],
    }
    path = folder / f"{line}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, load_line(path)


def _copied(machine: dict[str, Any], copy: int, only: str | None, unit_ids: Any) -> dict[str, Any]:
    kind_type = MACHINE_TYPES[machine["kind"]]
    params = dict(machine.get("params") or {})
    for field in kind_type.REFERENCES:
        target = params.get(field, kind_type.Params.model_fields[field].default)
        params[field] = (
            f"{target}_{copy}" if isinstance(target, str) else [f"{t}_{copy}" for t in target]
        )
    protocol = only or machine["protocol"]
    out = {**machine, "protocol": protocol, "params": params}
    out.pop("unit_id", None)
    if protocol == "modbus":
        out["unit_id"] = next(unit_ids)
    else:
        out["signals"] = {
            signal: {k: v for k, v in spec.items() if k != "modbus"}
            for signal, spec in machine["signals"].items()
        }
    return out
