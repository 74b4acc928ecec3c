"""The Historian contract, checked the same way on SQLite, InfluxDB 1.x and InfluxDB 2.x."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from core.schema import telemetry_point
from historian import Historian, HistorianError, Point, Quality, Reading, Sample
from historian.sqlite import SQLiteHistorian

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000  # one second in ns


def sample(machine: str, signal: str, value: float, ts: int, quality: Quality = Quality.GOOD):
    return Sample("line1", machine, signal, value, quality, ts, site="plant")


def telemetry(s: Sample) -> Point:
    """The Point a Sample reads back as."""
    tags = {"site": s.site, "line": s.line, "machine": s.machine, "signal": s.signal}
    fields: dict[str, float | int | bool | str] = {"quality": int(s.quality)}
    if math.isfinite(s.value):
        fields["value"] = float(s.value)
    return Point("telemetry", tags, fields, s.source_ts)


def reading(s: Sample) -> tuple[object, ...]:
    """A Reading as a comparable tuple (NaN != NaN)."""
    return (s.site, s.line, s.machine, s.signal, repr(float(s.value)), s.quality, s.source_ts)


def as_tuple(r: Reading) -> tuple[object, ...]:
    return (r.site, r.line, r.machine, r.signal, repr(r.value), r.quality, r.ts)


SAMPLES = [
    sample("filler", "speed_bpm", 120.0, T0),
    sample("filler", "speed_bpm", 121.5, T0 + S),
    sample("filler", "level_mm", 0.1 + 0.2, T0),  # needs every digit to come back exact
    sample("pasteurizer", "temperature_c", 72.25, T0),
    sample("pasteurizer", "temperature_c", math.nan, T0 + 2 * S, Quality.BAD),
    sample("pasteurizer", "flow_lpm", 1e16, T0 + S),
    sample("pasteurizer", "flow_lpm", -3, T0 + 3 * S, Quality.UNCERTAIN),
]

POINTS = [
    Point(
        "anomaly",
        {"site": "plant", "line": "line1", "machine": "filler", "detector": "iforest"},
        {"score": 0.93, "threshold": 0.8, "is_anomaly": True, "top_signal": 'speed "bpm"'},
        T0,
    ),
    Point(
        "events",
        {"site": "plant", "line": "line1", "machine": "capper", "kind": "fault"},
        {"text": "bearing wear\nstarted, 3\\4 load", "active": False},
        T0 + S,
    ),
    Point(
        "connector",
        {"connector": "opcua-line1", "endpoint": "opc.tcp://10.0.0.5:4840"},
        {
            "connected": True,
            "samples": 2**40,
            "errors": 0,
            "reconnects": 3,
            "latency_ms": 2.0,
            "spool_bytes": 0,
            "spool_dropped": 12,
        },
        T0,
    ),
    Point(
        "kpi",
        {"site": "plant", "line": "line1", "machine": "filler"},
        {"availability": 1.0, "performance": 0.875, "quality": 0.99, "oee": 0.866},
        T0 + 2 * S,
    ),
]


def expected_telemetry(samples: list[Sample]) -> list[Point]:
    return sorted(
        map(telemetry, samples),
        key=lambda p: (p.ts, *(p.tags[t] for t in ("site", "line", "machine", "signal"))),
    )


async def test_samples_read_back_exactly(historian: Historian) -> None:
    await historian.write_samples(SAMPLES)
    assert await historian.points("telemetry") == expected_telemetry(SAMPLES)


async def test_latest_is_newest_point_per_series_with_nan_for_bad(historian: Historian) -> None:
    await historian.write_samples(SAMPLES)
    latest = [as_tuple(r) for r in await historian.latest()]
    assert latest == [reading(s) for s in (SAMPLES[2], SAMPLES[1], SAMPLES[6], SAMPLES[4])]
    assert all(isinstance(r.quality, Quality) for r in await historian.latest())


async def test_latest_filters(historian: Historian) -> None:
    await historian.write_samples(SAMPLES)
    by_machine = await historian.latest(machine="filler")
    assert [r.signal for r in by_machine] == ["level_mm", "speed_bpm"]
    by_signal = await historian.latest(signal="flow_lpm")
    assert [as_tuple(r) for r in by_signal] == [reading(SAMPLES[6])]
    recent = await historian.latest(since_ns=T0 + 2 * S)
    assert [r.signal for r in recent] == ["flow_lpm", "temperature_c"]
    assert await historian.latest(machine="nobody") == []


async def test_points_of_every_measurement(historian: Historian) -> None:
    await historian.write_points(POINTS)
    for point in POINTS:
        assert await historian.points(point.measurement) == [point]


async def test_points_tag_filter_and_half_open_time_range(historian: Historian) -> None:
    await historian.write_samples(SAMPLES)
    got = await historian.points(
        "telemetry", tags={"machine": "pasteurizer"}, start_ns=T0 + S, end_ns=T0 + 3 * S
    )
    assert got == expected_telemetry([SAMPLES[5], SAMPLES[4]])
    assert await historian.points("telemetry", tags={"signal": "it's \\ nothing"}) == []


async def test_same_series_and_time_overwrites_fields_it_carries(historian: Historian) -> None:
    await historian.write_samples([sample("filler", "speed_bpm", 1.0, T0)])
    await historian.write_samples([sample("filler", "speed_bpm", 2.0, T0)])
    assert [r.value for r in await historian.latest()] == [2.0]
    # A bad sample at the same instant carries no value: InfluxDB keeps the stored one.
    await historian.write_samples([sample("filler", "speed_bpm", math.nan, T0, Quality.BAD)])
    [only] = await historian.points("telemetry")
    assert only.fields == {"value": 2.0, "quality": 2}


async def test_awkward_names_round_trip(historian: Historian) -> None:
    awkward = ["a b", "a,b", "a=b", 'say "hi"', "it's", "back\\slash", "ünï☃", "x\\y z,=w"]
    samples = [
        Sample(line, f"m {i}", "sig,nal=1", float(i), Quality.GOOD, T0 + i, site="s'1")
        for i, line in enumerate(awkward)
    ]
    await historian.write_samples(samples)
    assert await historian.points("telemetry") == expected_telemetry(samples)
    for s in samples:
        got = await historian.points("telemetry", tags={"line": s.line, "site": "s'1"})
        assert got == [telemetry(s)]


async def test_missing_tags_and_fields_stay_missing(historian: Historian) -> None:
    sparse = Point("events", {"machine": "filler", "kind": "note"}, {"text": "no site"}, T0)
    await historian.write_points([sparse])
    assert await historian.points("events") == [sparse]
    assert await historian.points("events", tags={"site": ""}) == [sparse]


async def test_fields_stored_as_model_types(historian: Historian) -> None:
    ints_for_floats = Point("kpi", {"machine": "filler"}, {"oee": 1, "availability": 0}, T0)
    await historian.write_points([ints_for_floats])
    [got] = await historian.points("kpi")
    assert got.fields == {"oee": 1.0, "availability": 0.0}
    assert all(type(v) is float for v in got.fields.values())


async def test_non_finite_fields_are_left_out(historian: Historian) -> None:
    await historian.write_points(
        [
            Point("kpi", {"machine": "a"}, {"oee": math.nan, "quality": 0.5}, T0),
            Point("kpi", {"machine": "b"}, {"oee": math.inf}, T0),
        ]
    )
    assert await historian.points("kpi") == [Point("kpi", {"machine": "a"}, {"quality": 0.5}, T0)]


async def test_large_batch_is_split_and_fully_stored(historian: Historian) -> None:
    samples = [sample("filler", f"s{i % 7}", float(i), T0 + i) for i in range(12_345)]
    await historian.write_samples(samples)
    assert len(await historian.points("telemetry")) == len(samples)
    assert len(await historian.latest()) == 7


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (Point("weather", {}, {"v": 1.0}, T0), "unknown measurement 'weather'"),
        (Point("kpi", {"colour": "red"}, {"oee": 1.0}, T0), "not in the data model: colour"),
        (Point("kpi", {}, {"oee": 1.0, "mood": "ok"}, T0), "not in the data model: mood"),
        (Point("kpi", {}, {}, T0), "at least one field"),
    ],
)
async def test_points_outside_the_model_are_refused(
    historian: Historian, point: Point, message: str
) -> None:
    with pytest.raises(HistorianError, match=message):
        await historian.write_points([point])
    with pytest.raises(HistorianError, match="no tag colour"):
        await historian.points("kpi", tags={"colour": "red"})


TEXT_POINTS = [  # what the data model's "Values" table says non-numbers become
    telemetry_point(("plant", "line1", "filler", "batch_id"), T0, Quality.GOOD, text='B-17 "x"'),
    telemetry_point(
        ("plant", "line1", "filler", "mode"), T0, Quality.GOOD, value=2.0, text="Running"
    ),
    telemetry_point(("plant", "line1", "filler", "batch_id"), T0 + S, Quality.BAD),
]


async def test_text_values_round_trip_with_quality_and_time(historian: Historian) -> None:
    await historian.write_points(TEXT_POINTS)
    await historian.write_samples([sample("filler", "speed_bpm", 1.5, T0)])
    got = await historian.points("telemetry", tags={"machine": "filler"})
    assert [(p.tags["signal"], p.fields, p.ts) for p in got] == [
        ("batch_id", {"quality": 0, "text": 'B-17 "x"'}, T0),
        ("mode", {"quality": 0, "value": 2.0, "text": "Running"}, T0),
        ("speed_bpm", {"quality": 0, "value": 1.5}, T0),
        ("batch_id", {"quality": 2}, T0 + S),
    ]
    latest = {r.signal: (r.text, r.quality) for r in await historian.latest()}
    assert latest == {
        "batch_id": (None, Quality.BAD),
        "mode": ("Running", Quality.GOOD),
        "speed_bpm": (None, Quality.GOOD),
    }


async def test_sqlite_file_of_the_numbers_only_model_gains_text(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the layout before `telemetry.text`
        conn.executescript(
            "CREATE TABLE telemetry_series (id INTEGER PRIMARY KEY, site TEXT NOT NULL,"
            " line TEXT NOT NULL, machine TEXT NOT NULL, signal TEXT NOT NULL,"
            " UNIQUE (site, line, machine, signal));"
            "CREATE TABLE telemetry (series INTEGER NOT NULL, time INTEGER NOT NULL,"
            " value REAL, quality INTEGER, PRIMARY KEY (series, time)) WITHOUT ROWID;"
            "CREATE VIEW telemetry_points AS SELECT s.site, s.line, s.machine, s.signal,"
            " t.time, t.value, t.quality FROM telemetry t JOIN telemetry_series s"
            " ON s.id = t.series;"
            "INSERT INTO telemetry_series VALUES (1, 'plant', 'line1', 'filler', 'speed_bpm');"
            f"INSERT INTO telemetry VALUES (1, {T0}, 3.0, 0);"
        )
    conn.close()
    store = SQLiteHistorian(str(path))
    try:
        await store.write_points(TEXT_POINTS[:1])
        got = await store.points("telemetry")
        assert [(p.tags["signal"], p.fields) for p in got] == [
            ("batch_id", {"quality": 0, "text": 'B-17 "x"'}),
            ("speed_bpm", {"quality": 0, "value": 3.0}),
        ]
    finally:
        await store.close()
