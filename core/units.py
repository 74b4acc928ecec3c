"""Units read off signal names.

The data model keeps units in signal names (`temperature_c`, `current_a`), so any
reader of the historian can show them without a side table that could drift from the data.
"""

from __future__ import annotations

import math
import struct

# Signal-name suffix -> (unit symbol, Grafana unit id). The Grafana ids are checked against
# Grafana's own list (tests/dashboards); `suffix:TEXT` is Grafana's custom unit for the rest.
# Longest suffix first wins, so `_kwh` is not read as `_h` and `_mm_s` not as `_s`.
SUFFIXES: dict[str, tuple[str, str]] = {
    "_mm_s": ("mm/s", "suffix:mm/s"),
    "_m3_min": ("m³/min", "suffix:m³/min"),
    "_m_min": ("m/min", "suffix:m/min"),
    "_l_min": ("L/min", "suffix:L/min"),
    "_per_min": ("1/min", "suffix:/min"),
    "_hours": ("h", "h"),
    "_kwh": ("kWh", "kwatth"),
    "_lph": ("L/h", "litreh"),
    "_bpm": ("1/min", "suffix:/min"),
    "_kvarh": ("kvarh", "suffix:kvarh"),
    "_kvar": ("kvar", "kvoltampreact"),
    "_kva": ("kVA", "kvoltamp"),
    "_kw": ("kW", "kwatt"),
    "_rpm": ("rpm", "rotrpm"),
    "_bar": ("bar", "pressurebar"),
    "_pct": ("%", "percent"),
    "_hz": ("Hz", "hertz"),
    "_nm": ("N·m", "forceNm"),
    "_ms": ("ms", "ms"),
    "_ml": ("mL", "mlitre"),
    "_c": ("°C", "celsius"),
    "_a": ("A", "amp"),
    "_v": ("V", "volt"),
    "_h": ("h", "h"),
    "_s": ("s", "s"),
    "_g": ("g", "massg"),
    "_l": ("L", "litre"),
    "_total": ("count", "short"),
}
_ORDERED = sorted(SUFFIXES.items(), key=lambda item: -len(item[0]))


def _lookup(signal: str) -> tuple[str, str]:
    for suffix, units in _ORDERED:
        if signal.endswith(suffix):
            return units
    return "", ""


def unit_of(signal: str) -> str:
    """The unit a signal name carries, or '' when it names none (states, flags, ratios)."""
    return _lookup(signal)[0]


def grafana_unit_of(signal: str) -> str:
    """The Grafana unit id for a signal's name, or '' when it names no unit."""
    return _lookup(signal)[1]


def suffix_for(unit: str) -> str | None:
    """The signal-name suffix that carries `unit` (e.g. '°C' -> '_c'), None when none does."""
    for suffix, (known, _) in _ORDERED:
        if known == unit.strip():
            return suffix
    return None


def format_value(value: float) -> str:
    """A stored value with the digits its tag carries, no more; '-' for no value.

    Whole numbers print whole (counters exactly, up to 2**53). A value that a 32-bit float holds
    exactly came from one (a float32 register, an OPC UA Float) and gets the fewest digits
    that tell it apart from its neighbours (13.780268, not 13.780267715454102); any other
    value gets the 15 digits a double carries free of arithmetic noise (56.3, not
    56.300000000000004: a 16-bit register times its scale).
    """
    if not math.isfinite(value):
        return "-"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if _float32(value) == value:
        return next(
            text
            for digits in range(6, 10)
            if _float32(float(text := f"{value:.{digits}g}")) == value
        )
    return f"{value:.15g}"


def _float32(value: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:  # beyond float32's range: not a float32
        return math.nan
