import pytest

from core.units import unit_of
from plc_sim.spec import UNITS, load_line


@pytest.mark.parametrize(
    ("signal", "unit"),
    [
        ("product_temp_c", "°C"),
        ("motor_current_a", "A"),
        ("energy_kwh", "kWh"),
        ("power_kw", "kW"),
        ("vibration_mm_s", "mm/s"),
        ("speed_hz", "Hz"),
        ("pressure_bar", "bar"),
        ("bottles_filled_total", "count"),
        ("state", ""),
        ("running", ""),
    ],
)
def test_unit_is_read_off_the_signal_name(signal: str, unit: str) -> None:
    assert unit_of(signal) == unit


def test_the_simulated_plcs_spell_each_unit_as_every_reader_does() -> None:
    """`browse` and `check` show the OPC UA server's EngineeringUnits; `query`, the live status,
    the live view and the dashboards read units off the signal names (core/units.py). A student
    sees one spelling of each unit in all of them."""
    spec = load_line()
    spelled = {
        (machine, signal): UNITS[signal_spec.unit][1]
        for machine, machine_spec in spec.machines.items()
        for signal, signal_spec in machine_spec.signals.items()
        if unit_of(signal) not in ("", "count")
    }
    assert spelled, "the line has signals with units"
    different = {key: unit for key, unit in spelled.items() if unit != unit_of(key[1])}
    assert not different, different
