import pytest

from core.units import unit_of


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
