"""OEE from hand-made state and counter series: what is computed for which machine."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.features import Frame
from analytics.oee import kpi_point, machine_oee, observed_rate_per_s, oee_by_interval
from core.reasons import Category, Reason

STOPPED, IDLE, RUNNING, FAULTED = 0.0, 1.0, 2.0, 3.0


def states(*stretches: tuple[float, int]) -> np.ndarray:
    """A 1 s state series from (state, seconds) stretches."""
    return np.concatenate([np.full(n, s) for s, n in stretches])


def counter(state: np.ndarray, per_s: float) -> np.ndarray:
    """A counter that rises `per_s` each running second (integer, as PLCs count)."""
    return np.floor(np.cumsum(np.where(state == RUNNING, per_s, 0.0)))


def frame(**columns: np.ndarray) -> Frame:
    n = len(next(iter(columns.values())))
    values = np.column_stack(list(columns.values()))
    return Frame(np.arange(n, dtype=float) + 1000.0, tuple(columns), values)


# 100 s stopped (not planned), 300 running, 50 idle, 50 faulted, 100 running: planned 500, run 400
STATE = states((STOPPED, 100), (RUNNING, 300), (IDLE, 50), (FAULTED, 50), (RUNNING, 100))


def test_state_only_machine_gets_availability_only() -> None:
    oee = machine_oee("conveyor", frame(state=STATE), 1000.0, 1600.0)
    assert oee is not None
    assert oee.availability == pytest.approx(400 / 500)
    assert oee.performance is None and oee.quality is None and oee.oee is None
    assert set(oee.fields()) == {"availability", "planned_loss", "unplanned_loss"}
    # no reason-code signal: every lost second counts as unplanned
    assert (oee.planned_loss, oee.unplanned_loss) == (0.0, pytest.approx(100 / 500))


def test_reason_codes_split_availability_loss_into_planned_and_unplanned() -> None:
    # the idle 50 s were a changeover (planned, code 11), the faulted 50 s a jam (unplanned, 1)
    codes = states((0.0, 400), (11.0, 50), (1.0, 50), (0.0, 100))
    oee = machine_oee("filler", frame(state=STATE, reason_code=codes), 1000.0, 1600.0)
    assert oee is not None
    assert oee.planned_loss == pytest.approx(50 / 500)
    assert oee.unplanned_loss == pytest.approx(50 / 500)
    assert oee.availability + oee.planned_loss + oee.unplanned_loss == pytest.approx(1.0)
    # a plant's own table: its code 11 is a breakdown
    plant = {11: Reason(11, "gearbox", Category.UNPLANNED)}
    oee = machine_oee("filler", frame(state=STATE, reason_code=codes), 1000.0, 1600.0, None, plant)
    assert oee is not None and oee.planned_loss == 0.0


def test_counters_give_performance_and_quality() -> None:
    filled = counter(STATE, 1.8)  # 90% of an ideal 2 per second
    rejected = counter(STATE, 0.09)  # 5% of the output is rejected
    data = frame(state=STATE, bottles_filled_total=filled, bottles_rejected_total=rejected)
    oee = machine_oee("filler", data, 1000.0, 1600.0, ideal_rate_per_s=2.0)
    assert oee is not None
    assert oee.availability == pytest.approx(0.8)
    assert oee.performance == pytest.approx(0.9, abs=0.005)
    assert oee.quality == pytest.approx(0.95, abs=0.005)
    assert oee.oee == pytest.approx(0.8 * 0.9 * 0.95, abs=0.01)
    assert set(oee.fields()) == {
        *("availability", "performance", "quality", "oee", "planned_loss", "unplanned_loss")
    }


def test_output_counter_without_rejects_has_quality_one() -> None:
    data = frame(state=STATE, caps_applied_total=counter(STATE, 2.0))
    oee = machine_oee("capper", data, 1000.0, 1600.0, ideal_rate_per_s=2.0)
    assert oee is not None and oee.quality == 1.0
    assert oee.performance == pytest.approx(1.0, abs=0.01)


def test_ideal_rate_is_observed_when_not_given() -> None:
    data = frame(state=STATE, caps_applied_total=counter(STATE, 1.5))
    assert observed_rate_per_s(data, "caps_applied_total") == pytest.approx(1.5, abs=0.02)
    oee = machine_oee("capper", data, 1000.0, 1600.0)
    assert oee is not None and oee.performance == pytest.approx(1.0, abs=0.02)


def test_counter_reset_and_gaps_add_nothing() -> None:
    count = counter(STATE, 2.0)
    count[450:] -= count[450]  # the PLC restarted: the counter starts again from 0
    count[120:130] = np.nan  # a gap (bad quality)
    data = frame(state=STATE, caps_applied_total=count)
    oee = machine_oee("capper", data, 1000.0, 1600.0, ideal_rate_per_s=2.0)
    assert oee is not None and oee.performance is not None
    assert 0.9 < oee.performance <= 1.0


def test_no_state_or_nothing_planned_gives_no_kpi() -> None:
    assert machine_oee("meter", frame(power_kw=np.ones(10)), 1000.0, 1010.0) is None
    assert machine_oee("conveyor", frame(state=np.zeros(10)), 1000.0, 1010.0) is None


def test_intervals_are_aligned_and_become_kpi_points() -> None:
    state = states((RUNNING, 600), (IDLE, 600))
    data = Frame(np.arange(1200, dtype=float) + 3000.0, ("state",), state[:, None])
    found = oee_by_interval("conveyor", data, 600.0)
    assert [(o.start, o.end, o.availability) for o in found] == [
        (3000.0, 3600.0, 1.0),
        (3600.0, 4200.0, 0.0),
    ]
    point = kpi_point(found[0], {"site": "demo", "line": "line1"})
    assert point.measurement == "kpi"
    assert point.tags == {"site": "demo", "line": "line1", "machine": "conveyor"}
    assert point.fields == {"availability": 1.0, "planned_loss": 0.0, "unplanned_loss": 0.0}
    assert point.ts == 3600 * 10**9
