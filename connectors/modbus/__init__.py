"""Modbus TCP input plugin: polls holding/input registers, coils and discrete inputs.

The plugin contract (see connectors/config.py PLUGINS): the shared loader validates a
`type: modbus` entry with `Config`, `build` makes its input, `check` reads every tag once.
"""

from connectors.modbus.check import check
from connectors.modbus.client import ModbusInput, build
from connectors.modbus.config import Config

__all__ = ["Config", "ModbusInput", "build", "check"]
