"""Stops from hand-made state and reason-code rows: when a stop opens and ends, which reason it
gets, micro-stops, the Pareto's order, and a plant's own reason codes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from analytics.downtime import ReasonsError, StopTracker, load_reasons, pareto, stops
from core.reasons import STANDARD_REASONS, Category, ReasonCode
from plc_sim.machines import StopReason

STOPPED, IDLE, RUNNING, FAULTED = 0.0, 1.0, 2.0, 3.0
NAN = float("nan")
TAGS = {"site": "demo", "line": "line1"}


def rows(*stretches: tuple[float, float, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1 s rows from (state, reason code, seconds) stretches, from t = 1000."""
    state = np.concatenate([np.full(n, s) for s, _, n in stretches])
    codes = np.concatenate([np.full(n, c) for _, c, n in stretches])
    return np.arange(len(state), dtype=float) + 1000.0, state, codes


def test_the_simulated_plcs_use_the_standard_codes() -> None:
    assert {r.name: r.value for r in StopReason} == {r.name: r.value for r in ReasonCode}


def test_a_stop_is_idle_or_faulted_with_the_first_reason_the_plc_gives() -> None:
    tracker = StopTracker("filler", TAGS)
    events = tracker.feed(
        *rows(
            (RUNNING, 0, 10),
            (IDLE, 0, 2),  # the PLC names the reason two seconds after the machine stood
            (FAULTED, 1, 20),
            (NAN, NAN, 5),  # a gap neither ends the stop nor opens one
            (IDLE, 2, 30),
            (RUNNING, 0, 10),
            (IDLE, 11, 200),
            (STOPPED, 0, 10),  # switched off: ends the stop, is not one
        )
    )
    opened = [e for e in events if e.fields["active"]]
    closed = [e for e in events if not e.fields["active"]]
    assert [e.ts / 1e9 for e in opened] == [1010.0, 1077.0]
    assert [(e.fields["reason"], e.fields["category"]) for e in opened] == [
        ("unassigned", "unplanned"),  # known when it opened: none yet
        ("changeover", "planned"),
    ]
    assert [
        (e.fields["reason"], e.fields["duration_s"], e.fields["micro_stop"]) for e in closed
    ] == [("jam", 57.0, True), ("changeover", 200.0, False)]
    assert tracker.current is None


def test_a_stop_open_before_a_restart_goes_on_and_rows_are_fed_once() -> None:
    times, state, codes = rows((RUNNING, 0, 5), (IDLE, 10, 100), (RUNNING, 0, 5))
    first = StopTracker("filler", TAGS)
    before = first.feed(times[:50], state[:50], codes[:50])
    assert first.feed(times[:50], state[:50], codes[:50]) == []  # read again: nothing new
    (still_open,) = [s for s in stops(before) if s.end is None]

    second = StopTracker("filler", TAGS)
    second.resume(still_open)
    (closed,) = second.feed(times[50:], state[50:], codes[50:])
    assert closed.fields["duration_s"] == 100.0 and closed.fields["reason"] == "cleaning"
    (stop,) = stops([*before, closed])
    assert (stop.start, stop.end, stop.reason.category) == (1005.0, 1105.0, Category.PLANNED)


def test_a_reason_read_after_the_state_still_names_the_stop() -> None:
    """A change-only state is not in every read: the code may come in a read without it."""
    tracker = StopTracker("capper", TAGS)
    (opened,) = tracker.feed(*rows((RUNNING, 0, 3), (IDLE, 0, 2)))
    assert opened.fields["reason"] == "unassigned"
    times, state, codes = rows((NAN, 3, 10))  # no state sample in this read, the code is 3
    assert tracker.feed(times + 5, state, codes) == []
    times, state, codes = rows((RUNNING, 0, 1))
    (closed,) = tracker.feed(times + 15, state, codes)
    assert (closed.fields["reason"], closed.fields["duration_s"]) == ("starved", 12.0)


def test_the_pareto_ranks_reasons_by_lost_time() -> None:
    tracker = StopTracker("filler", TAGS, micro_stop_s=60.0)
    events = tracker.feed(
        *rows(
            *[(IDLE, 3, 30), (RUNNING, 0, 10)] * 4,  # four short starvations: 120 s
            (IDLE, 10, 100),
            (RUNNING, 0, 10),
            (FAULTED, 1, 300),
            (RUNNING, 0, 10),
            (IDLE, 11, 5),  # still open: not ranked yet
        )
    )
    ranked = pareto(stops(events), micro_stop_s=60.0)
    assert [(r.reason, r.stops, r.micro_stops, r.lost_s) for r in ranked] == [
        ("jam", 1, 0, 300.0),
        ("starved", 4, 4, 120.0),
        ("cleaning", 1, 0, 100.0),
    ]
    assert sum(r.share for r in ranked) == pytest.approx(1.0)


def test_a_plant_names_its_own_codes(tmp_path: Path) -> None:
    path = tmp_path / "reasons.yaml"
    path.write_text(
        "filler:\n  7: {name: no_caps}\n  11: {name: format_change, category: planned}\n"
    )
    tables = load_reasons(path)
    tracker = StopTracker("filler", TAGS, tables["filler"])
    events = tracker.feed(*rows((IDLE, 7, 10), (RUNNING, 0, 1), (IDLE, 11, 10), (IDLE, 99, 1)))
    assert [(e.fields["reason"], e.fields["category"]) for e in events if e.fields["active"]] == [
        ("no_caps", "unplanned"),
        ("format_change", "planned"),
    ]
    assert tables["filler"][1] == STANDARD_REASONS[1]  # the rest of the standard table stays
    unknown = StopTracker("capper", TAGS).feed(*rows((IDLE, 42, 3)))
    assert unknown[0].fields["reason"] == "code 42"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("filler: [1, 2]", "reasons.yaml: filler: expected codes"),
        ("filler:\n  0: {name: idle}", "reasons.yaml: filler.0: a code is a whole number above 0"),
        ("filler:\n  7: {category: planned}", "reasons.yaml: filler.7: needs `name:`"),
        ("filler:\n  7: {name: x, category: maybe}", "category is planned or unplanned"),
        ("filler:\n  7: {name: x, colour: red}", "filler.7: unknown key colour; remove it"),
        ("[unclosed", "reasons.yaml: cannot read the reasons file"),
        ("- a list", "expected machine names"),
    ],
)
def test_a_bad_reasons_file_is_one_clear_message(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "reasons.yaml"
    path.write_text(text)
    with pytest.raises(ReasonsError, match=re.escape(expected)):
        load_reasons(path)
