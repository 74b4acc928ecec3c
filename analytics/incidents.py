"""Incidents: anomaly episodes on one line that overlap in time, grouped into one, with the
machine and signal that moved first named as the likely origin.

A fault spreads: a jammed conveyor starves the filler and blocks the capper, a sagging supply
shows on every drive. Shown as separate episodes, the knock-on effects hide the cause; grouped,
the first episode to open is the likely origin, because effects follow causes (one detection
step apart is enough to tell). Episodes that open within `tie_s` of the first count as
simultaneous, and among them the one earliest in the line's order of machines (upstream first)
is taken, where the order is known. Knock-on effects show within minutes (the process's time
constants): an episode that opens more than `spread_s` after an incident began starts one of
its own, even while the old one is still open, so a long episode does not swallow the next
fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analytics.episodes import Episode

JOIN_S = 60.0  # an episode opening this soon after an incident's last one ended still joins it
TIE_S = 0.0  # episodes opening this close together count as opening at once
SPREAD_S = 600.0  # knock-on effects open within this long of the incident's first episode


@dataclass(frozen=True)
class Incident:
    """Overlapping episodes of one line; `machines` in the order their first episode opened."""

    start: float
    end: float
    origin: str
    origin_signal: str
    machines: tuple[str, ...]
    episodes: tuple[tuple[str, Episode], ...] = ()  # (machine, episode), in opening order

    @property
    def spread(self) -> bool:
        """Whether it reached more than one machine."""
        return len(self.machines) > 1


def group_incidents(
    episodes: Mapping[str, Sequence[Episode]],
    line_order: Sequence[str] = (),
    *,
    join_s: float = JOIN_S,
    tie_s: float = TIE_S,
    spread_s: float = SPREAD_S,
    hold_off_s: float = 0.0,
) -> list[Incident]:
    """The incidents of a line's episodes (per machine), in time order: the IncidentTracker
    replayed over every opening and closing, so that a batch and a live run agree. A live run
    learns that an episode closed `hold_off_s` after its last anomalous row (the alarm logic's
    hold-off); until then another machine's episode still joins its incident."""
    tracker = IncidentTracker(line_order, join_s=join_s, tie_s=tie_s, spread_s=spread_s)
    changes = sorted(
        (
            (moment, closing, machine, episode)
            for machine, eps in episodes.items()
            for episode in eps
            for moment, closing in ((episode.start, False), (episode.end + hold_off_s, True))
        ),
        key=lambda change: change[:3],  # openings before closings at the same moment
    )
    incidents: list[Incident] = []
    for moment, closing, machine, episode in changes:
        if closing:
            tracker.closed(machine, episode)
            continue
        ended = tracker.ended(moment)
        before, _ = tracker.opened(machine, episode)
        incidents += [i for i in (ended, before) if i is not None]
    last = tracker.ended(float("inf"), stopping=True)
    return incidents + ([last] if last is not None else [])


def _incident(
    group: list[tuple[str, Episode]], line_order: Sequence[str], tie_s: float
) -> Incident:
    first = group[0][1].start
    rank = {machine: i for i, machine in enumerate(line_order)}
    at_once = [(m, ep) for m, ep in group if ep.start <= first + tie_s]
    origin, episode = min(at_once, key=lambda pair: (rank.get(pair[0], len(rank)), pair[1].start))
    machines = tuple(dict.fromkeys(m for m, _ in group))
    return Incident(
        start=first,
        end=max(ep.end for _, ep in group),
        origin=origin,
        origin_signal=episode.top_signal,
        machines=machines,
        episodes=tuple(group),
    )


class IncidentTracker:
    """The same grouping, streaming, for one line: fed each episode as it opens and closes, it
    says when an incident opens or changes (a machine joins, an upstream one takes the origin)
    and when it ends: `join_s` after its last episode closed with none open."""

    def __init__(
        self,
        line_order: Sequence[str] = (),
        *,
        join_s: float = JOIN_S,
        tie_s: float = TIE_S,
        spread_s: float = SPREAD_S,
    ) -> None:
        self.line_order, self.join_s, self.tie_s = tuple(line_order), join_s, tie_s
        self.spread_s = spread_s
        self._episodes: list[tuple[str, Episode]] = []  # of the current incident
        self._open: set[str] = set()  # machines with an episode under way
        self.current: Incident | None = None

    def opened(self, machine: str, episode: Episode) -> tuple[Incident | None, Incident]:
        """An episode opened: (the incident it ended, if it opened too late to join the one
        under way, and the incident it starts or joins, as it stands now)."""
        ended = None
        if self.current is not None and episode.start > self.current.start + self.spread_s:
            ended = self.current
            self.current, self._open = None, set()
        if self.current is None:
            self._episodes = []
        self._episodes.append((machine, episode))
        self._open.add(machine)
        self.current = _incident(self._episodes, self.line_order, self.tie_s)
        return ended, self.current

    def closed(self, machine: str, episode: Episode) -> None:
        """An episode closed (with its final end)."""
        self._open.discard(machine)
        self._episodes = [
            (m, episode if m == machine and ep.start == episode.start else ep)
            for m, ep in self._episodes
        ]
        if self.current is not None:
            self.current = _incident(self._episodes, self.line_order, self.tie_s)

    def ended(self, now: float, *, stopping: bool = False) -> Incident | None:
        """The incident, if it ended by `now` (or detection stops), and forget it."""
        incident = self.current
        if incident is None or (self._open and not stopping):
            return None
        if not stopping and now < incident.end + self.join_s:
            return None
        self.current, self._episodes, self._open = None, [], set()
        return incident
