"""OPC UA input plugin: subscribes to (or polls) PLC tags and emits `historian.Sample` batches.

Works against any OPC UA server (Siemens, Beckhoff, CODESYS, the simulator); see README.md.
The plugin contract (see connectors/config.py PLUGINS): `Config`, `build` and `check`.
"""

from connectors.opcua.check import check
from connectors.opcua.client import OpcUaInput
from connectors.opcua.config import Config


def build(config: Config, *, site: str, line: str) -> OpcUaInput:
    """The input for one validated `type: opcua` connector entry."""
    return OpcUaInput(config, site=site, line=line)


__all__ = ["Config", "OpcUaInput", "build", "check"]
