"""Modbus TCP input plugin: polls holding/input registers, coils and discrete inputs.

The shared loader validates a `type: modbus` entry with `Config` and calls `build`.
"""

from connectors.modbus.client import ModbusInput, build
from connectors.modbus.config import Config

__all__ = ["Config", "ModbusInput", "build"]
