"""The model factory: simulated PLCs of a production line speaking OPC UA and Modbus TCP.

Stands alone: imports nothing else of Shopfloor. The servers and the real-time runner live in
`plc_sim.runner` (`run_simulator`), kept out of this import so the pure model loads fast.
"""

from plc_sim.faults import FAULT_KINDS, FaultError, FaultEvent
from plc_sim.machines import MachineState
from plc_sim.process import Simulator
from plc_sim.spec import LineSpec, LineSpecError, load_line
from plc_sim.tags import ExposedTag, exposed_tags

__all__ = [
    "FAULT_KINDS",
    "ExposedTag",
    "FaultError",
    "FaultEvent",
    "LineSpec",
    "LineSpecError",
    "MachineState",
    "Simulator",
    "exposed_tags",
    "load_line",
]
