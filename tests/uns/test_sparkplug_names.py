"""The rule that turns a Sparkplug metric name and its engUnit into a signal name
(docs/unified-namespace.md, "Edge nodes of other vendors"), case by case."""

from __future__ import annotations

import pytest

from uns.sparkplug_values import iso_ms, signal_name


@pytest.mark.parametrize(
    ("metric", "unit", "signal"),
    [
        ("Motor/Temperature", "°C", "Motor_Temperature_c"),  # folders joined, unit suffix added
        ("temperature_c", "°C", "temperature_c"),  # our own edge's names stay as they are
        ("Motor/Speed", "rpm", "Motor_Speed_rpm"),
        ("Tank 1/Level", "%", "Tank_1_Level_pct"),  # blanks are separators too
        ("Line//Filler/ Count", "", "Line_Filler_Count"),  # runs collapse
        ("Pressure", "psi", "Pressure_psi"),  # a unit with no suffix of ours, as written
        ("Flow", "m³/h", "Flow_m³_h"),
        ("/", "°C", ""),  # nothing left: refused by the caller
    ],
)
def test_metric_names_become_signal_names(metric: str, unit: str, signal: str) -> None:
    assert signal_name(metric, unit) == signal


def test_datetime_is_iso_8601_utc_with_milliseconds() -> None:
    assert iso_ms(1_796_677_200_125) == "2026-12-07T21:00:00.125Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
