"""Online detection: every step, score each machine's latest window and write what it shows.

Each cycle reads the last few seconds of telemetry (overlapping the previous read, so late
writes are not missed) into a TelemetryBuffer, builds every due machine's newest feature row
with its MachineModel's window, scores it (in a worker thread: scikit-learn must not stall the
event loop that also runs the connectors) and writes

- `anomaly` points: score, threshold, is_anomaly, top_signal, model_version (tag `detector`);
- `events` points of kind `anomaly` when AlarmLogic opens an episode (active true) or closes it
  (active false): top_signal, peak_score and, on closing, duration_s as fields for the
  dashboards' episode tables, and the same in the text for their annotations; `close()` ends
  the episodes still open when detection stops, so none stays "in progress" forever;
- `events` points of kind `incident` when overlapping episodes of a line open, grow or end
  (analytics.incidents): tag `machine` the likely origin, fields top_signal (its signal),
  machines (all it reached) and, on closing, duration_s;
- `kpi` points (OEE per machine, analytics.oee) at the end of every `kpi_interval_s`;
- `events` of kind `stop` as machines stand and run again (analytics.downtime.DowntimeFollower).

A machine in a planned period (`events` of kind planned, analytics.planned, re-read every
PLAN_REFRESH_S) is scored as always, its `anomaly` points marked planned, but opens no episode:
the alarm logic sees no score above the threshold, so an episode under way ends after its
hold-off.

Given the models folder's ActiveVersions, each cycle checks which version of each machine's
model is active and swaps in a changed one (a rollback, a model learnt from a label) without a
restart; an episode under way goes on under the new model.

The clock is injected: `step(now_s)` is one cycle for a given time, so history can be replayed
at full speed; `run()` paces it in real time. A historian outage is logged once, retried with
backoff and never crashes the loop; points that could not be written are kept (bounded) and
written first on the next cycle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analytics.downtime import DowntimeFollower, Reasons
from analytics.episodes import AlarmLogic, Episode
from analytics.features import Frame, WindowSpec, feature_signal, window_features
from analytics.incidents import Incident, IncidentTracker
from analytics.model_store import ActiveVersions, MachineModel, ModelError, check_signals
from analytics.oee import kpi_point, observed_rate_per_s, oee_by_interval, output_counters
from analytics.planned import PLAN_LOOKBACK_S, PlannedPeriod, is_planned, planned_periods
from analytics.windows import MachineTelemetry, TelemetryBuffer, read_telemetry
from core.backoff import Backoff
from core.reasons import MICRO_STOP_S, STANDARD_REASONS
from core.sample import Point
from core.schema import ANOMALY, EVENTS, EventKind
from core.severity import anomaly_severity
from core.storage import Historian, HistorianError

log = logging.getLogger(__name__)

READ_OVERLAP_S = 10.0  # re-read this much of the previous cycle: catches samples written late
KPI_GRID = WindowSpec(period_s=1.0)  # OEE counts state time on a 1 s grid
KPI_LOOKBACK_S = 600.0  # read this much before an interval: the state held when it began
PLAN_REFRESH_S = 30.0  # a plan made with `shopfloor plan` counts within this long


@dataclass
class OnlineStats:
    """What the detector has done, for status displays and tests."""

    cycles: int = 0
    scored: int = 0
    anomalies: int = 0
    episodes_opened: int = 0
    episodes_closed: int = 0
    kpi_points: int = 0
    failed_cycles: int = 0
    pending_points: int = 0
    last_error: str = ""

    def summary(self) -> str:
        """One line on what the detector did, for the end of a run."""
        return (
            f"{self.scored} windows scored, {self.anomalies} above threshold, "
            f"{self.episodes_opened} episodes, {self.kpi_points} kpi points, "
            f"{self.failed_cycles} failed cycles"
        )


@dataclass
class _Machine:
    model: MachineModel
    alarm: AlarmLogic
    next_due: float = -math.inf
    problem: str = ""  # the last reason it could not be scored, logged once
    last_row: _Row | None = None  # the tags of its last scored row, for closing on stop


@dataclass(frozen=True)
class _Row:
    machine: str
    tags: dict[str, str]
    features: np.ndarray  # (1, n_features)
    names: list[str]


class OnlineDetector:
    """Scores the machines that have a model; see the module docstring for what it writes."""

    def __init__(
        self,
        historian: Historian,
        models: Mapping[str, MachineModel],
        *,
        lag_s: float = 2.0,
        kpi_interval_s: float | None = 900.0,
        ideal_rates_per_min: Mapping[str, float] | None = None,
        hold_s: float = 600.0,
        cycle_timeout_s: float = 10.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_pending: int = 50_000,
        line_order: Sequence[str] = (),
        active_versions: ActiveVersions | None = None,
        reasons: Mapping[str, Reasons] | None = None,
        micro_stop_s: float = MICRO_STOP_S,
    ) -> None:
        if not models:
            raise ValueError("OnlineDetector needs at least one machine model")
        self.historian = historian
        self.lag_s = lag_s
        self.kpi_interval_s = kpi_interval_s
        self.ideal_rates_per_min = dict(ideal_rates_per_min or {})
        self.cycle_timeout_s = cycle_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.max_pending = max_pending
        self.stats = OnlineStats()
        self.step_s = min(m.window.step_s for m in models.values())
        self._machines = {
            model.machine: _Machine(model, AlarmLogic(**model.alarm)) for model in models.values()
        }
        self._lookback_s = max(m.window.window_s + 2 * m.window.period_s for m in models.values())
        self._buffer = TelemetryBuffer(hold_s)
        self._read_until: float | None = None
        self._kpi_done: float | None = None
        self._observed_rates: dict[str, float] = {}
        self._pending: list[Point] = []
        self._line_order = tuple(line_order)
        self._incidents: dict[tuple[tuple[str, str], ...], IncidentTracker] = {}
        self._active_versions = active_versions
        self._plans: list[PlannedPeriod] = []
        self._plans_read: float = -math.inf
        self.reasons = dict(reasons or {})  # machine -> its reason codes, where not standard
        self._downtime = DowntimeFollower(historian, self.reasons, micro_stop_s)

    async def step(self, now_s: float) -> list[Point]:
        """One cycle for the windows ending at `now_s`: read, score, write; the points it made.

        HistorianError or TimeoutError if the historian fails (what was scored stays pending).
        """
        self.stats.cycles += 1
        await self._swap_models()
        found = await self._read(now_s)
        await self._read_plans(now_s)
        rows = self._due_rows(now_s)
        points = await self._score(rows, now_s) if rows else []
        points += self._ended_incidents(now_s)
        self._hold(points)
        kpis = await self._kpis(now_s)
        self._hold(kpis)
        stops = await self._downtime.step(now_s, found)
        self._hold(stops)
        await self._flush()
        return points + kpis + stops

    async def close(self) -> list[Point]:
        """Detection stops (clean shutdown): close every open episode at its last anomalous
        row (active=false, duration_s) and write what is pending; the closing events. A
        historian that fails now is logged, not raised: stopping must not fail."""
        closing = []
        for machine in self._machines.values():
            episode = machine.alarm.finish()
            if episode is not None and machine.last_row is not None:
                closing.append(self._event(machine.last_row, episode, active=False, stopped=True))
                self._tracker(machine.last_row).closed(machine.last_row.machine, episode)
        closing += self._ended_incidents(math.inf, stopping=True)
        self._hold(closing)
        try:
            await self._flush()
        except (HistorianError, TimeoutError) as exc:
            log.warning("%d anomaly points not written at shutdown: %s", len(self._pending), exc)
        return closing

    def open_episodes(self) -> dict[str, Episode]:
        """The anomaly episodes under way, per machine: for status displays."""
        episodes = {name: m.alarm.open_episode for name, m in self._machines.items()}
        return {name: episode for name, episode in episodes.items() if episode is not None}

    async def run(self, clock: Callable[[], float] = time.time) -> None:
        """Call step() every `step_s` of `clock` until cancelled; outages are waited out."""
        backoff = Backoff(self.retry_min_s, self.retry_max_s)
        failing_since: float | None = None
        due = math.ceil(clock() / self.step_s) * self.step_s
        while True:
            await asyncio.sleep(max(0.0, due - clock()))
            try:
                async with asyncio.timeout(self.cycle_timeout_s):
                    await self.step(due - self.lag_s)
            except (HistorianError, TimeoutError) as exc:
                self._note_failure(exc, first=failing_since is None)
                failing_since = failing_since if failing_since is not None else clock()
                await asyncio.sleep(backoff.next())
                due = math.ceil(clock() / self.step_s) * self.step_s
                continue
            if failing_since is not None:
                log.warning(
                    "historian is back after %.0f s; detection goes on", clock() - failing_since
                )
                failing_since = None
                backoff.reset()
            due += self.step_s
            if due < clock():  # fell behind (slow historian): skip to now, do not pile up
                due = math.ceil(clock() / self.step_s) * self.step_s

    def _note_failure(self, exc: BaseException, *, first: bool) -> None:
        self.stats.failed_cycles += 1
        self.stats.last_error = str(exc) or type(exc).__name__
        if first:
            log.warning(
                "anomaly detection paused, historian unavailable (retrying with backoff): %s",
                self.stats.last_error,
            )
        else:
            log.debug("historian still unavailable: %s", self.stats.last_error)

    async def _swap_models(self) -> None:
        """Use the models that became active since the last cycle (file reads: in a thread)."""
        if self._active_versions is None:
            return
        for model in await asyncio.to_thread(self._active_versions.changed):
            machine = self._machines[model.machine]
            log.warning(
                "%s: now scored by model %s (was %s)",
                model.machine,
                model.lineage.name,
                machine.model.lineage.name,
            )
            machine.model = model
            window = model.window
            self._lookback_s = max(self._lookback_s, window.window_s + 2 * window.period_s)

    async def _read_plans(self, now_s: float) -> None:
        """The planned periods, re-read every PLAN_REFRESH_S (new plans, cancelled ones)."""
        if abs(now_s - self._plans_read) < PLAN_REFRESH_S:
            return
        start_ns = round((now_s - PLAN_LOOKBACK_S) * 1e9)
        kind = {"kind": EventKind.PLANNED.value}
        self._plans = planned_periods(
            await self.historian.points(EVENTS.name, tags=kind, start_ns=start_ns)
        )
        self._plans_read = now_s

    async def _read(self, now_s: float) -> dict[str, MachineTelemetry]:
        oldest = now_s - self._lookback_s - self._buffer.hold_s
        start = oldest if self._read_until is None else self._read_until - READ_OVERLAP_S
        start = max(start, oldest)
        found = await read_telemetry(self.historian, start, now_s + 1e-6)
        self._buffer.merge(found)
        self._buffer.trim(now_s - self._lookback_s)
        self._read_until = now_s
        return found

    def _due_rows(self, now_s: float) -> list[_Row]:
        rows = []
        for name, machine in self._machines.items():
            if now_s < machine.next_due:
                continue
            machine.next_due = now_s + machine.model.window.step_s - 1e-6
            row = self._row(name, machine, now_s)
            if row is not None:
                rows.append(row)
        return rows

    def _row(self, name: str, machine: _Machine, now_s: float) -> _Row | None:
        """The machine's newest feature row, or None (why is logged once per reason)."""
        window = machine.model.window
        telemetry = self._buffer.window(name, now_s - window.window_s - window.period_s, now_s)
        try:
            check_signals(machine.model, telemetry.signal_names())
        except ModelError as exc:
            self._skip(name, machine, str(exc))
            return None
        frame = telemetry.frame(window, machine.model.signals)
        times, features, names = window_features(frame, window)
        if len(times) == 0 or times[-1] < now_s - max(window.step_s, window.period_s):
            self._skip(name, machine, "no complete window (gaps or bad-quality samples)")
            return None
        if machine.problem:
            log.info("%s: scored again", name)
            machine.problem = ""
        return _Row(name, telemetry.tags, features[-1:], names)

    def _skip(self, name: str, machine: _Machine, why: str) -> None:
        if why != machine.problem:
            log.warning("%s: not scored: %s", name, why)
            machine.problem = why

    async def _score(self, rows: Sequence[_Row], now_s: float) -> list[Point]:
        models = [self._machines[r.machine].model for r in rows]
        scored = await asyncio.to_thread(
            lambda: [m.score(r.features) for m, r in zip(models, rows, strict=True)]
        )
        points = []
        for row, (scores, top) in zip(rows, scored, strict=True):
            machine = self._machines[row.machine]
            machine.last_row = row
            score, threshold = float(scores[0]), machine.model.threshold
            top_signal = feature_signal(row.names[int(top[0])])
            planned = is_planned(self._plans, row.machine, now_s)
            points.append(
                self._anomaly_point(row, machine.model, now_s, (score, planned), top_signal)
            )
            alarming = -math.inf if planned else score
            opened, closed = machine.alarm.update(now_s, alarming, threshold, top_signal)
            points += [self._event(row, e, active=True) for e in (opened,) if e is not None]
            points += [self._event(row, e, active=False) for e in (closed,) if e is not None]
            points += self._follow_incident(row, opened, closed)
        self.stats.scored += len(rows)
        return points

    def _anomaly_point(
        self,
        row: _Row,
        model: MachineModel,
        now_s: float,
        scored: tuple[float, bool],
        top_signal: str,
    ) -> Point:
        """The score of a row; `scored`: (score, whether in a planned period)."""
        score, planned = scored
        flagged = score > model.threshold
        self.stats.anomalies += flagged
        return Point(
            ANOMALY.name,
            {**row.tags, "detector": model.detector},
            {
                "score": score,
                "threshold": model.threshold,
                "severity": anomaly_severity(score, model.threshold),
                "is_anomaly": flagged,
                "top_signal": top_signal,
                "model_version": model.lineage.name,
                "planned": planned,
            },
            round(now_s * 1e9),
        )

    def _event(self, row: _Row, episode: Episode, *, active: bool, stopped: bool = False) -> Point:
        """The episode's opening or closing event (`stopped`: closed because detection
        stopped): the text is the annotation, the fields are what the episode tables show."""
        severity = anomaly_severity(episode.peak_score, self._machines[row.machine].model.threshold)
        fields: dict[str, float | bool | str] = {
            "active": active,
            "top_signal": episode.top_signal,
            "peak_score": episode.peak_score,
            "peak_severity": severity,
        }
        if active:
            self.stats.episodes_opened += 1
            text = f"anomaly on {row.machine}: {episode.top_signal} (severity {severity:.1f})"
            ts = episode.start
        else:
            self.stats.episodes_closed += 1
            duration_s = fields["duration_s"] = episode.end - episode.start
            why = " (detection stopped)" if stopped else ""
            text = (
                f"anomaly on {row.machine} ended after {duration_s:.0f} s{why}: "
                f"peak severity {severity:.1f} on {episode.top_signal}"
            )
            ts = episode.end
        tags = {**row.tags, "kind": EventKind.ANOMALY.value}
        return Point(EVENTS.name, tags, {"text": text, **fields}, round(ts * 1e9))

    def _tracker(self, row: _Row) -> IncidentTracker:
        line = tuple(sorted((k, v) for k, v in row.tags.items() if k != "machine"))
        return self._incidents.setdefault(line, IncidentTracker(self._line_order))

    def _follow_incident(
        self, row: _Row, opened: Episode | None, closed: Episode | None
    ) -> list[Point]:
        """The incident event an episode opening makes (a new incident, or one grown)."""
        tracker = self._tracker(row)
        if closed is not None:
            tracker.closed(row.machine, closed)
        if opened is None:
            return []
        line = {k: v for k, v in row.tags.items() if k != "machine"}
        ended, incident = tracker.opened(row.machine, opened)
        points = [_incident_event(line, ended, active=False)] if ended is not None else []
        return [*points, _incident_event(line, incident, active=True)]

    def _ended_incidents(self, now_s: float, *, stopping: bool = False) -> list[Point]:
        points = []
        for line, tracker in self._incidents.items():
            incident = tracker.ended(now_s, stopping=stopping)
            if incident is not None:
                points.append(_incident_event(dict(line), incident, active=False))
        return points

    async def _kpis(self, now_s: float) -> list[Point]:
        """OEE of every machine for each interval that ended since the last cycle."""
        if not self.kpi_interval_s:
            return []
        interval = self.kpi_interval_s
        boundary = math.floor(now_s / interval) * interval
        if self._kpi_done is None:
            self._kpi_done = boundary  # the interval under way when we started is incomplete
        if boundary <= self._kpi_done:
            return []
        since = self._kpi_done
        found = await read_telemetry(self.historian, since - KPI_LOOKBACK_S, boundary)
        points = []
        for name, telemetry in found.items():
            frame = telemetry.frame(KPI_GRID)
            ideal = self._ideal_rate(name, frame)
            reasons = self.reasons.get(name, STANDARD_REASONS)
            oees = oee_by_interval(
                name, frame, interval, ideal, since=since, until=boundary, reasons=reasons
            )
            points += [kpi_point(oee, telemetry.tags) for oee in oees]
        self._kpi_done = boundary
        self.stats.kpi_points += len(points)
        return points

    def _ideal_rate(self, name: str, frame: Frame) -> float | None:
        """The configured ideal rate (per minute), else the best nominal rate seen so far."""
        if name in self.ideal_rates_per_min:
            return self.ideal_rates_per_min[name]
        counter, _ = output_counters(frame.signals)
        rate = observed_rate_per_s(frame, counter) if counter else None
        best = max(filter(None, (rate, self._observed_rates.get(name))), default=None)
        if best is not None:
            self._observed_rates[name] = best
        return best * 60.0 if best is not None else None

    def _hold(self, points: list[Point]) -> None:
        """Queue points for writing; past `max_pending` (a long outage) the oldest go."""
        self._pending.extend(points)
        dropped = len(self._pending) - self.max_pending
        if dropped > 0:
            del self._pending[:dropped]
            log.warning("historian unavailable too long: %d anomaly points dropped", dropped)
        self.stats.pending_points = len(self._pending)

    async def _flush(self) -> None:
        """Write what is pending; on failure keep it for the next cycle."""
        if not self._pending:
            return
        async with asyncio.timeout(self.cycle_timeout_s):
            await self.historian.write_points(self._pending)
        self._pending = []
        self.stats.pending_points = 0


def _incident_event(line: Mapping[str, str], incident: Incident, *, active: bool) -> Point:
    """An incident's event: opened or grown (active), or ended with its duration."""
    others = [m for m in incident.machines if m != incident.origin]
    spread = f", then {', '.join(others)}" if others else ""
    fields: dict[str, float | bool | str] = {
        "active": active,
        "top_signal": incident.origin_signal,
        "machines": ",".join(incident.machines),
    }
    if active:
        text = f"incident: {incident.origin} ({incident.origin_signal}) first{spread}"
        ts = incident.start
    else:
        fields["duration_s"] = incident.end - incident.start
        text = f"incident ended after {incident.end - incident.start:.0f} s: began on "
        text += f"{incident.origin} ({incident.origin_signal}){spread}"
        ts = incident.end
    tags = {**line, "machine": incident.origin, "kind": EventKind.INCIDENT.value}
    return Point(EVENTS.name, tags, {"text": text, **fields}, round(ts * 1e9))
