"""Units read off signal names.

The data model keeps units in signal names (DESIGN.md: `temperature_c`, `current_a`), so any
reader of the historian can show them without a side table that could drift from the data.
"""

from __future__ import annotations

# Longest suffix first wins, so `_kwh` is not read as `_h` and `_mm_s` not as `_s`.
_SUFFIXES: dict[str, str] = {
    "_mm_s": "mm/s",
    "_m3_min": "m³/min",
    "_m_min": "m/min",
    "_l_min": "L/min",
    "_per_min": "1/min",
    "_hours": "h",
    "_kwh": "kWh",
    "_lph": "L/h",
    "_bpm": "1/min",
    "_kvarh": "kvarh",
    "_kvar": "kvar",
    "_kva": "kVA",
    "_kw": "kW",
    "_rpm": "rpm",
    "_bar": "bar",
    "_pct": "%",
    "_hz": "Hz",
    "_nm": "N·m",
    "_ms": "ms",
    "_ml": "mL",
    "_c": "°C",
    "_a": "A",
    "_v": "V",
    "_h": "h",
    "_s": "s",
    "_g": "g",
    "_l": "L",
    "_total": "count",
}
_ORDERED = sorted(_SUFFIXES.items(), key=lambda item: -len(item[0]))


def unit_of(signal: str) -> str:
    """The unit a signal name carries, or '' when it names none (states, flags, ratios)."""
    for suffix, unit in _ORDERED:
        if signal.endswith(suffix):
            return unit
    return ""


def suffix_for(unit: str) -> str | None:
    """The signal-name suffix that carries `unit` (e.g. '°C' -> '_c'), None when none does."""
    for suffix, known in _ORDERED:
        if known == unit.strip():
            return suffix
    return None
