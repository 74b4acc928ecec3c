"""Event-level scoring of anomaly episodes against the true fault intervals of labelled runs.

How an episode is counted (the rules `shopfloor eval` prints its numbers by):

- A fault's *window* is its interval plus `grace_s` after its end: a process needs time to return
  to normal once a fault clears (motor windings cool with a 400-600 s time constant), and an
  episode still open then is the same event, not a new one.
- An episode on the fault's machine that overlaps the window *catches* the fault; the first such
  episode gives the detection delay (its start minus the fault's start, never below 0) and its
  top_signal is judged. Further episodes on that fault are *duplicates*: one fault should be
  one episode, so they count against precision.
- The top_signal is *right* when it names a signal the fault shows on by its own description
  (`symptoms`: the main signal, or e.g. the speed of a jammed conveyor, any phase voltage of a
  three-phase sag, the falling product temperature of a fouled heat exchanger; the list and its
  reasons are plc_sim.scenarios.SYMPTOMS): what a plant engineer accepts as naming the fault.
  Whether it names the main signal itself is reported beside it (main_signal_accuracy).
- An episode on another machine inside some fault's window is *secondary* (a jammed conveyor
  really does starve the filler): reported, but neither a hit nor a false alarm.
- Any other episode is a *false alarm*. False alarms per day are per day of fault-free time:
  the observed span less every fault window on any machine.
- Episodes are grouped into incidents (analytics.incidents). A caught fault *spread* when the
  incident holding its first catching episode holds another machine's episode that opened after
  the fault began (one opened before it is no effect of it: a knock-on episode of an earlier
  fault, still open); its incident's origin is *right* when it names the fault's machine.

Precision = caught / (caught + duplicates + false alarms), recall = caught / faults. False alarms
belong to no fault type, so per fault type precision only counts duplicates and the false-alarm
rate is reported overall only (None per fault type).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from analytics.episodes import Episode
from analytics.incidents import Incident, group_incidents

GRACE_S = 900.0
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class TrueFault:
    """A fault that really happened (from the simulator's ground truth or the `events` log)."""

    machine: str
    fault: str
    signal: str
    start: float
    end: float
    kind: Literal["gradual", "abrupt"]
    symptoms: tuple[str, ...] = ()  # besides `signal`, signals a right top_signal may name


@dataclass(frozen=True, slots=True)
class ScoredRun:
    """One labelled run after detection: episodes per machine over the observed span."""

    episodes: Mapping[str, Sequence[Episode]]
    faults: Sequence[TrueFault]
    start: float
    end: float
    sample_s: float
    line_order: tuple[str, ...] = ()  # the line's machines, upstream first, where known
    hold_off_s: float = 0.0  # the alarm logic's: how long after its last row an episode closes


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    """What detection made of one fault."""

    fault: TrueFault
    caught: bool
    delay_s: float | None
    delay_samples: float | None
    top_signal_right: bool
    main_signal_right: bool
    duplicates: int
    spread: bool = False  # its incident reached other machines
    origin_right: bool = False  # and named the fault's machine as its origin


@dataclass(slots=True)
class Tally:
    """Outcomes and episode counts of one or more runs, before they become scores."""

    outcomes: list[FaultOutcome] = field(default_factory=list)
    false_alarms: int = 0
    secondary: int = 0
    fault_free_s: float = 0.0

    def add(self, other: Tally) -> None:
        self.outcomes += other.outcomes
        self.false_alarms += other.false_alarms
        self.secondary += other.secondary
        self.fault_free_s += other.fault_free_s


@dataclass(frozen=True, slots=True)
class Scores:
    """The issue's numbers for one group of faults, plus the counts they come from."""

    precision: float | None
    recall: float | None
    f1: float | None
    median_delay_s: float | None
    p90_delay_s: float | None
    median_delay_samples: float | None
    p90_delay_samples: float | None
    false_alarms_per_day: float | None
    top_signal_accuracy: float | None
    main_signal_accuracy: float | None
    incident_origin_accuracy: float | None  # of the caught faults that spread
    faults: int
    caught: int
    duplicates: int
    spread_faults: int
    false_alarms: int | None

    def as_json(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Evaluation:
    overall: Scores
    per_fault: dict[str, Scores]
    per_kind: dict[str, Scores]  # "gradual" / "abrupt": the delay targets differ
    secondary_episodes: int
    fault_free_days: float
    grace_s: float


def evaluate(runs: Iterable[ScoredRun], *, grace_s: float = GRACE_S) -> Evaluation:
    """Score the episodes of every run against its faults (see the module notes for the rules)."""
    tally = Tally()
    for run in runs:
        tally.add(tally_run(run, grace_s))
    fault_free_days = tally.fault_free_s / DAY_S
    per_fault = _grouped(tally.outcomes, lambda o: o.fault.fault)
    per_kind = _grouped(tally.outcomes, lambda o: o.fault.kind)
    return Evaluation(
        overall=scores(tally.outcomes, tally.false_alarms, fault_free_days),
        per_fault=per_fault,
        per_kind=per_kind,
        secondary_episodes=tally.secondary,
        fault_free_days=fault_free_days,
        grace_s=grace_s,
    )


def _grouped(outcomes: list[FaultOutcome], key: Callable[[FaultOutcome], str]) -> dict[str, Scores]:
    groups: dict[str, list[FaultOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(key(outcome), []).append(outcome)
    return {name: scores(group, None, None) for name, group in sorted(groups.items())}


def tally_run(run: ScoredRun, grace_s: float) -> Tally:
    """Match one run's episodes to its faults."""
    faults = [f for f in run.faults if f.end > run.start and f.start < run.end]
    episodes = [(m, i, ep) for m, eps in run.episodes.items() for i, ep in enumerate(eps)]
    incidents = group_incidents(run.episodes, run.line_order, hold_off_s=run.hold_off_s)
    matched: set[tuple[str, int]] = set()
    outcomes = []
    for fault in faults:
        hits = [
            (m, i, ep)
            for m, i, ep in episodes
            if m == fault.machine and _overlaps(ep, fault.start, fault.end + grace_s)
        ]
        fresh = [(m, i) for m, i, _ in hits if (m, i) not in matched]
        matched.update(fresh)
        outcome = _outcome(fault, [ep for *_, ep in hits], max(0, len(fresh) - 1), run.sample_s)
        outcomes.append(_with_incident(outcome, [ep for *_, ep in hits], incidents))
    false_alarms = secondary = 0
    for m, i, ep in episodes:
        if (m, i) in matched:
            continue
        if any(_overlaps(ep, f.start, f.end + grace_s) for f in faults):
            secondary += 1
        else:
            false_alarms += 1
    windows = [(f.start, f.end + grace_s) for f in faults]
    fault_free = run.end - run.start - _covered(windows, run.start, run.end)
    return Tally(outcomes, false_alarms, secondary, fault_free)


def _overlaps(ep: Episode, start: float, end: float) -> bool:
    return ep.start <= end and ep.end >= start


def _outcome(
    fault: TrueFault, hits: list[Episode], duplicates: int, sample_s: float
) -> FaultOutcome:
    if not hits:
        return FaultOutcome(fault, False, None, None, False, False, 0)
    first = min(hits, key=lambda ep: ep.start)
    delay = max(0.0, first.start - fault.start)
    right = first.top_signal == fault.signal or first.top_signal in fault.symptoms
    return FaultOutcome(
        fault, True, delay, delay / sample_s, right, first.top_signal == fault.signal, duplicates
    )


def _with_incident(
    outcome: FaultOutcome, hits: list[Episode], incidents: list[Incident]
) -> FaultOutcome:
    """The outcome with what the incident that holds its first catching episode says (not
    merely one under way then: a long episode's incident can overlap the next fault's). The
    fault spread when that incident holds another machine's episode that opened after the
    fault began: one opened before it is no knock-on effect of it."""
    if not hits:
        return outcome
    fault = outcome.fault
    first = (fault.machine, min(hits, key=lambda ep: ep.start))
    incident = next(i for i in incidents if first in i.episodes)
    spread = any(m != fault.machine and ep.start >= fault.start for m, ep in incident.episodes)
    return replace(outcome, spread=spread, origin_right=spread and incident.origin == fault.machine)


def _covered(windows: list[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of `windows` inside [start, end]."""
    total, reach = 0.0, start
    for a, b in sorted(windows):
        a, b = max(a, reach), min(b, end)
        if b > a:
            total += b - a
            reach = b
    return total


def scores(
    outcomes: Sequence[FaultOutcome], false_alarms: int | None, fault_free_days: float | None
) -> Scores:
    """The numbers of a group of outcomes; `false_alarms` None when the group owns none."""
    caught = [o for o in outcomes if o.caught]
    spread = [o for o in caught if o.spread]
    duplicates = sum(o.duplicates for o in outcomes)
    flagged = len(caught) + duplicates + (false_alarms or 0)
    precision = len(caught) / flagged if flagged else None
    recall = len(caught) / len(outcomes) if outcomes else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    delays = [o.delay_s for o in caught if o.delay_s is not None]
    samples = [o.delay_samples for o in caught if o.delay_samples is not None]
    per_day = None
    if false_alarms is not None and fault_free_days:
        per_day = false_alarms / fault_free_days
    return Scores(
        precision=precision,
        recall=recall,
        f1=f1,
        median_delay_s=_percentile(delays, 50),
        p90_delay_s=_percentile(delays, 90),
        median_delay_samples=_percentile(samples, 50),
        p90_delay_samples=_percentile(samples, 90),
        false_alarms_per_day=per_day,
        top_signal_accuracy=_share(caught, lambda o: o.top_signal_right),
        main_signal_accuracy=_share(caught, lambda o: o.main_signal_right),
        incident_origin_accuracy=_share(spread, lambda o: o.origin_right),
        faults=len(outcomes),
        caught=len(caught),
        duplicates=duplicates,
        spread_faults=len(spread),
        false_alarms=false_alarms,
    )


def _share(outcomes: list[FaultOutcome], right: Callable[[FaultOutcome], bool]) -> float | None:
    return sum(map(right, outcomes)) / len(outcomes) if outcomes else None


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def evaluation_json(
    evaluation: Evaluation, *, seeds: Sequence[int], training_seeds: Sequence[int], detector: str
) -> dict[str, object]:
    """The issue's JSON shape (overall, per_fault, seeds, detector) plus what it was scored by."""
    return {
        "overall": evaluation.overall.as_json(),
        "per_fault": {name: s.as_json() for name, s in evaluation.per_fault.items()},
        "per_kind": {name: s.as_json() for name, s in evaluation.per_kind.items()},
        "seeds": list(seeds),
        "training_seeds": list(training_seeds),
        "detector": detector,
        "grace_s": evaluation.grace_s,
        "fault_free_days": evaluation.fault_free_days,
        "secondary_episodes": evaluation.secondary_episodes,
    }


def format_table(evaluation: Evaluation) -> str:
    """Per fault type, per kind (gradual/abrupt) and overall, one row each."""
    header = (
        "FAULT",
        "N",
        "CAUGHT",
        "PREC",
        "RECALL",
        "F1",
        "DELAY s",
        "P90 s",
        "DELAY smp",
        "P90 smp",
        "FA/DAY",
        "TOP SIG",
        "MAIN SIG",
        "ORIGIN",
    )
    rows: list[tuple[str, ...]] = [header]
    rows += [_row(name, s) for name, s in evaluation.per_fault.items()]
    rows += [_row(f"({name})", s) for name, s in evaluation.per_kind.items()]
    rows.append(_row("OVERALL", evaluation.overall))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def _row(name: str, s: Scores) -> tuple[str, ...]:
    return (
        name,
        str(s.faults),
        str(s.caught),
        _num(s.precision, ".2f"),
        _num(s.recall, ".2f"),
        _num(s.f1, ".2f"),
        _num(s.median_delay_s, ".0f"),
        _num(s.p90_delay_s, ".0f"),
        _num(s.median_delay_samples, ".0f"),
        _num(s.p90_delay_samples, ".0f"),
        _num(s.false_alarms_per_day, ".2f"),
        _num(s.top_signal_accuracy, ".2f"),
        _num(s.main_signal_accuracy, ".2f"),
        _num(s.incident_origin_accuracy, ".2f"),
    )


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
