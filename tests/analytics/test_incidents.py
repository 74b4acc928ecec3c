"""Incidents: overlapping episodes of one line grouped, the first to open named as the origin."""

from __future__ import annotations

from analytics.episodes import Episode
from analytics.incidents import IncidentTracker, group_incidents


def ep(start: float, end: float, signal: str = "s") -> Episode:
    return Episode(start=start, end=end, peak_score=2.0, top_signal=signal)


def test_a_jam_that_spreads_is_one_incident_named_after_the_machine_that_moved_first() -> None:
    episodes = {
        "filler": [ep(130, 400, "fill_rate")],
        "conveyor": [ep(100, 420, "speed_hz")],
        "capper": [ep(150, 380, "torque")],
        "energy_meter": [ep(2000, 2100, "power_kw")],  # hours later: another incident
    }
    first, second = group_incidents(episodes)
    assert (first.origin, first.origin_signal) == ("conveyor", "speed_hz")
    assert first.machines == ("conveyor", "filler", "capper") and first.spread
    assert (first.start, first.end) == (100, 420)
    assert second.machines == ("energy_meter",) and not second.spread


def test_episodes_opening_at_once_name_the_upstream_machine() -> None:
    episodes = {"capper": [ep(100, 200)], "filler": [ep(100, 210)]}
    (incident,) = group_incidents(episodes, line_order=("filler", "capper"))
    assert incident.origin == "filler"
    episodes["filler"] = [ep(101, 210)]  # one step later: the capper moved first
    (incident,) = group_incidents(episodes, line_order=("filler", "capper"))
    assert incident.origin == "capper"


def test_a_long_episode_does_not_swallow_the_next_fault() -> None:
    """The pasteurizer's fouling stays flagged for an hour; a compressor leak 40 minutes in is
    an incident of its own, not the fouling's knock-on effect."""
    episodes = {"pasteurizer": [ep(0, 3600)], "air_compressor": [ep(2400, 2600)]}
    incidents = group_incidents(episodes)
    assert [(i.origin, i.machines) for i in incidents] == [
        ("pasteurizer", ("pasteurizer",)),
        ("air_compressor", ("air_compressor",)),
    ]
    tracker = IncidentTracker()
    tracker.opened("pasteurizer", ep(0, 0))
    ended, new = tracker.opened("air_compressor", ep(2400, 2400))
    assert ended is not None and ended.origin == "pasteurizer"
    assert new.machines == ("air_compressor",)


def test_an_episode_soon_after_the_last_one_ended_joins_it() -> None:
    episodes = {"a": [ep(0, 100)], "b": [ep(130, 200)], "c": [ep(400, 500)]}
    incidents = group_incidents(episodes, join_s=60)
    assert [i.machines for i in incidents] == [("a", "b"), ("c",)]


def test_streaming_gives_the_same_incident_as_grouping_afterwards() -> None:
    tracker = IncidentTracker(line_order=("filler", "capper", "conveyor"), join_s=60)
    _, opened = tracker.opened("capper", ep(100, 100, "torque"))
    assert (opened.origin, opened.machines) == ("capper", ("capper",))
    _, grown = tracker.opened("filler", ep(100, 100, "fill_rate"))  # at once, and upstream
    assert (grown.origin, grown.machines) == ("filler", ("capper", "filler"))
    tracker.closed("capper", ep(100, 300, "torque"))
    assert tracker.ended(400) is None  # the filler's episode is still open
    tracker.closed("filler", ep(100, 350, "fill_rate"))
    assert tracker.ended(400) is None  # a new episode could still join until 350 + 60
    ended = tracker.ended(411)
    assert ended is not None and (ended.start, ended.end, ended.origin) == (100, 350, "filler")
    episodes = {"capper": [ep(100, 300, "torque")], "filler": [ep(100, 350, "fill_rate")]}
    assert [ended] == group_incidents(episodes, ("filler", "capper", "conveyor"), join_s=60)
    assert tracker.current is None and tracker.ended(1000) is None


def test_an_incident_under_way_ends_when_detection_stops() -> None:
    tracker = IncidentTracker()
    tracker.opened("filler", ep(10, 10))
    ended = tracker.ended(20, stopping=True)
    assert ended is not None and ended.origin == "filler"


def test_an_incident_holds_its_episodes_so_a_reader_can_tell_which_one_an_episode_is_in() -> None:
    episodes = {"pasteurizer": [ep(0, 3600)], "air_compressor": [ep(2400, 2600)]}
    first, second = group_incidents(episodes)
    assert first.episodes == (("pasteurizer", ep(0, 3600)),)
    assert second.episodes == (("air_compressor", ep(2400, 2600)),)


def test_grouping_afterwards_closes_episodes_when_a_live_run_learns_of_it() -> None:
    """Live, the filler's episode is reported closed only after the alarm's 300 s hold-off, so
    the capper's episode 100 s after the filler's last anomalous row joins its incident."""
    tracker = IncidentTracker()
    tracker.opened("filler", ep(0, 0))
    _, live = tracker.opened("capper", ep(200, 200))  # the filler's closing not reported yet
    assert live.machines == ("filler", "capper")
    episodes = {"filler": [ep(0, 100)], "capper": [ep(200, 250)]}
    (batch,) = group_incidents(episodes, hold_off_s=300)
    assert batch.machines == ("filler", "capper")
    assert [i.machines for i in group_incidents(episodes)] == [("filler",), ("capper",)]
