"""The dashboards' queries tell the truth about the data, run against the real test InfluxDB
on a timeline written for it: a line that died five minutes ago, one that runs with a 25 s
fault and a sag, an OPC UA machine that only reports changes and keep-alives, a second line
with a same-named machine, a dead and a live connector, a detector that went silent with an
episode open.

Each query is the one in the generated JSON, expanded as Grafana expands it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from core.sample import Point, Quality, Sample
from core.schema import KEEP_ALIVE_S, MachineState, telemetry_point
from dashboards.influxql import CONNECTOR_STALE_S, STALE_S
from historian import open_historian
from tests.conftest import fresh_database
from tests.dashboards.conftest import LineRun
from tests.dashboards.grafana_queries import Query, dashboard_queries, expand

pytestmark = pytest.mark.influxdb
NS = 10**9
SITE, LINE, OTHER_LINE = "plant", "L1", "L2"
DEAD_FOR_S = 300
SPAN_S = 900
FAULT_S = 25
QUERIES = {q.where: q for q in dashboard_queries()}
RUNNING, FAULTED = float(MachineState.RUNNING), float(MachineState.FAULTED)


def _query(where: str) -> Query:
    (found,) = [q for w, q in QUERIES.items() if w.startswith(where)]
    return found


@dataclasses.dataclass(frozen=True)
class Timeline:
    run: LineRun
    now: int  # seconds
    fault_at: int

    def rows(
        self,
        where: str,
        *,
        interval: str = "",
        time_filter: str = "time >= now() - 15m",
        **values: str | list[str],
    ) -> dict[str, list[list[Any]]]:
        """Series name (its tags joined by ',') -> rows of the dashboard query `where`."""
        query = _query(where)
        if interval:
            query = dataclasses.replace(query, interval=interval)
        chosen: Mapping[str, Sequence[str]] = {
            "site": [SITE], "line": [LINE],
            **{k: v if isinstance(v, list) else [v] for k, v in values.items()},
        }  # fmt: skip
        text = expand(query, chosen, time_filter=time_filter, to_ms=self.now * 1000)
        result = self.run.query(text)
        assert "error" not in result, (text, result)
        return {",".join(s.get("tags", {}).values()): s["values"] for s in result.get("series", [])}


def _telemetry(now: int, fault_at: int) -> Iterator[Sample]:
    def sample(machine: str, signal: str, value: float, t: int, line: str = LINE) -> Sample:
        return Sample(line, machine, signal, value, Quality.GOOD, t * NS, site=SITE)

    for t in range(now - SPAN_S, now + 1):
        faulted = fault_at <= t < fault_at + FAULT_S
        yield sample("alive", "state", FAULTED if faulted else RUNNING, t)
        yield sample("meter", "voltage_l1_v", 180.0 if faulted else 230.0, t)
        yield sample("alive", "state", float(MachineState.STOPPED), t, OTHER_LINE)
        if t < now - DEAD_FOR_S:
            yield sample("dead", "state", RUNNING, t)
    # change-only: one value, then the connectors' keep-alive; the last one 70 s before now
    for t in range(now - SPAN_S - 10, now - int(KEEP_ALIVE_S), int(KEEP_ALIVE_S)):
        yield sample("opcua", "state", RUNNING, t)


def _points(now: int) -> Iterator[Point]:
    for t in range(now - SPAN_S, now + 1, 10):
        for name, last in (("plc-a", now - DEAD_FOR_S), ("plc-b", now)):
            if t <= last:
                fields = {"connected": True, "samples": t - now + SPAN_S, "errors": 0}
                yield Point("connector", {"connector": name, "endpoint": "x"}, fields, t * NS)
    tags = {"site": SITE, "line": LINE, "detector": "iforest"}
    for t in range(now - SPAN_S, now + 1, 5):
        for machine, last in (("alive", now), ("dead", now - DEAD_FOR_S)):
            if t <= last:
                fields = {"score": 2.0, "threshold": 1.0, "is_anomaly": True, "top_signal": "x"}
                yield Point("anomaly", {**tags, "machine": machine}, fields, t * NS)
    batch = ("plant", LINE, "filler", "batch_id")  # a String tag: two batches, then bad
    yield telemetry_point(batch, (now - 600) * NS, Quality.GOOD, text="B-16")
    yield telemetry_point(batch, (now - 300) * NS, Quality.GOOD, text='B-17 "new"')
    yield telemetry_point(batch, (now - 100) * NS, Quality.BAD)
    mode = ("plant", LINE, "filler", "mode")  # an enumeration: its code and its name
    yield telemetry_point(mode, (now - 200) * NS, Quality.GOOD, value=1.0, text="Running")
    for machine in ("alive", "dead"):
        event_tags = {"site": SITE, "line": LINE, "machine": machine, "kind": "anomaly"}
        fields = {"text": "anomaly", "active": True, "top_signal": "x", "peak_score": 2.0}
        yield Point("events", event_tags, fields, (now - 400) * NS)


async def _write(url: str, now: int, fault_at: int) -> None:
    async with open_historian(url) as historian:
        await historian.write_samples(list(_telemetry(now, fault_at)))
        await historian.write_points(list(_points(now)))


@pytest.fixture(scope="module")
def timeline(influxdb_url: str) -> Iterator[Timeline]:
    now = int(time.time())
    bucket = 300  # a fault in the middle of a 5 m bucket, where last() never sees it
    fault_at = (now - 600) // bucket * bucket + 120
    with fresh_database(influxdb_url) as url:
        asyncio.run(_write(url, now, fault_at))
        parts = urllib.parse.urlsplit(url)
        http = f"{'https' if parts.scheme == 'influxdbs' else 'http'}://{parts.netloc}"
        run = LineRun(http, parts.path.strip("/"), (now - SPAN_S) * 1000, now * 1000)
        yield Timeline(run, now, fault_at)


STATES = "line-overview.json: panel 'Machine states'"


def test_a_dead_line_is_not_drawn_as_running_to_now(timeline: Timeline) -> None:
    rows = timeline.rows(STATES)["dead"]
    seen = [t for t, value in rows if value is not None]
    assert max(seen) // 1000 <= timeline.now - DEAD_FOR_S, "state carried past the last sample"
    assert rows[-1][1] is None  # the band is empty at now: no data
    assert timeline.rows(STATES)["alive"][-1][1] is not None


def test_a_change_only_state_fills_every_bucket_while_its_keep_alive_runs(
    timeline: Timeline,
) -> None:
    rows = timeline.rows(STATES)["opcua"]
    # The first bucket starts before the time range, so the part of it inside the range can be
    # shorter than one keep-alive interval (it depends on the clock); every full one is filled.
    assert all(value == RUNNING for _, value in rows[1:-1]), rows


def test_a_short_fault_shows_at_5_minute_buckets(timeline: Timeline) -> None:
    rows = timeline.rows(STATES, interval="5m", time_filter="time >= now() - 1h")["alive"]
    assert FAULTED in [value for _, value in rows]
    volts = timeline.rows(
        "line-overview.json: panel 'Supply voltage", interval="5m", time_filter="time >= now() - 1h"
    )
    assert min(v for _, v in volts["meter,voltage_l1_v"] if v is not None) == 180.0


def test_queries_keep_to_the_chosen_line(timeline: Timeline) -> None:
    here = {v for _, v in timeline.rows(STATES)["alive"] if v is not None}
    there = {v for _, v in timeline.rows(STATES, line=OTHER_LINE)["alive"] if v is not None}
    assert there == {float(MachineState.STOPPED)} and float(MachineState.STOPPED) not in here


def test_latest_values_look_back_past_a_short_range_but_not_to_a_dead_line(
    timeline: Timeline,
) -> None:
    latest = "machine-detail.json: panel 'Latest values'"
    short_range = "time >= now() - 1m"
    found = timeline.rows(latest, time_filter=short_range, machine="opcua", signal="state")
    assert [v for _, v in found["state"]] == [RUNNING]  # 70 s old, within 2 keep-alives
    assert timeline.rows(latest, machine="dead", signal="state") == {}  # 5 min old: stale


def test_sample_age_per_machine_is_red_past_the_limit(timeline: Timeline) -> None:
    ages = {m: rows[0][1] for m, rows in timeline.rows("line-overview.json: panel 'Newest").items()}
    # "alive" wrote at the timeline's `now`: its age is the time since then, in 10 s buckets
    since_written = time.time() - timeline.now
    assert ages["dead"] >= DEAD_FOR_S - 10 > STALE_S, ages
    assert ages["alive"] <= since_written + 10 and ages["opcua"] < STALE_S, ages


def test_a_connector_that_stopped_reporting_is_not_connected_and_its_age_is_red(
    timeline: Timeline,
) -> None:
    connected = timeline.rows(
        "connectors-health.json: panel 'Connected'", connector=["plc-a", "plc-b"]
    )
    assert {k: [v for _, v in rows] for k, rows in connected.items()} == {"plc-b": [True]}
    age = timeline.rows("connectors-health.json: panel 'Report age'", connector=["plc-a", "plc-b"])
    assert age["plc-a"][0][1] >= DEAD_FOR_S - 10 > CONNECTOR_STALE_S
    assert age["plc-b"][0][1] < CONNECTOR_STALE_S


def test_an_episode_whose_detector_went_silent_is_not_in_progress(timeline: Timeline) -> None:
    """The table is A inner-joined with B on machine, then active = true."""
    panel = "anomalies.json: panel 'Anomaly episodes in progress'"
    opened = timeline.rows(f"{panel} A")
    scored = timeline.rows(f"{panel} B")
    assert set(opened) == {"alive", "dead"}  # both last events opened an episode
    assert set(opened) & set(scored) == {"alive"}  # the silent detector's episode has ended


def test_latest_texts_show_the_newest_text_of_each_signal(timeline: Timeline) -> None:
    rows = timeline.rows(
        "machine-detail.json: panel 'Latest texts'", machine="filler", signal=["batch_id", "mode"]
    )
    newest = {signal: [text for _, text in found] for signal, found in rows.items()}
    # the last text of the range, though a bad reading (no text) came after it
    assert newest == {"batch_id": ['B-17 "new"'], "mode": ["Running"]}
