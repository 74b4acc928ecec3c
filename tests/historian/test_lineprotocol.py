"""Line protocol formatting against hand-written lines (what InfluxDB 1.x parses)."""

from __future__ import annotations

import math

import pytest

from core.sample import SampleBatch
from historian import HistorianError, Point, Quality, Sample
from historian.lineprotocol import format_point, format_points, format_samples, series_key


def test_samples_good_bad_and_nan() -> None:
    samples = [
        Sample("l1", "filler", "speed_bpm", 120.5, Quality.GOOD, 1_000, site="plant"),
        Sample("l1", "filler", "speed_bpm", math.nan, Quality.BAD, 2_000, site="plant"),
        Sample("l1", "filler", "speed_bpm", math.inf, Quality.BAD, 3_000, site="plant"),
        Sample("l1", "filler", "count", 7, Quality.UNCERTAIN, 4_000, site="plant"),
        Sample("l1", "filler", "tiny", 0.1 + 0.2, Quality.GOOD, 5_000, site="plant"),
    ]
    prefix = "telemetry,line=l1,machine=filler"
    assert format_samples(samples).split("\n") == [
        f"{prefix},signal=speed_bpm,site=plant value=120.5,quality=0i 1000",
        f"{prefix},signal=speed_bpm,site=plant quality=2i 2000",
        f"{prefix},signal=speed_bpm,site=plant quality=2i 3000",
        f"{prefix},signal=count,site=plant value=7,quality=1i 4000",
        f"{prefix},signal=tiny,site=plant value=0.30000000000000004,quality=0i 5000",
    ]


def test_tag_escaping_and_empty_tags_left_out() -> None:
    sample = Sample("a b,c=d", 'say "hi"', "back\\slash", 1.0, Quality.GOOD, 9, site="")
    assert format_samples([sample]) == (
        'telemetry,line=a\\ b\\,c\\=d,machine=say\\ "hi",signal=back\\slash value=1.0,quality=0i 9'
    )


def test_point_escaping_and_types() -> None:
    point = Point(
        "anomaly",
        {"machine": "m 1", "detector": "z=score"},
        {"score": 1, "threshold": 0.5, "is_anomaly": False, "top_signal": 'a "b" \\c'},
        123,
    )
    assert format_point(point) == (
        "anomaly,detector=z\\=score,machine=m\\ 1 "
        'score=1.0,threshold=0.5,is_anomaly=false,top_signal="a \\"b\\" \\\\c" 123'
    )
    connector = Point("connector", {"connector": "c"}, {"samples": 5, "connected": True}, 1)
    assert format_point(connector) == "connector,connector=c samples=5i,connected=true 1"


def test_measurement_escaping() -> None:
    assert series_key("my m,x", [("k,1", "v=1"), ("a", "")]) == "my\\ m\\,x,k\\,1=v\\=1"


def test_non_finite_point_fields_dropped_and_empty_points_skipped() -> None:
    points = [
        Point("kpi", {"machine": "a"}, {"oee": math.nan, "quality": 0.5}, 1),
        Point("kpi", {"machine": "b"}, {"oee": -math.inf}, 2),
    ]
    assert format_points(points) == "kpi,machine=a quality=0.5 1"


@pytest.mark.parametrize("name", ["two\nlines", "ends\\", "before\\ space", "x\\,y", "k\\=v"])
def test_names_line_protocol_cannot_carry_are_refused(name: str) -> None:
    with pytest.raises(HistorianError, match="cannot be written"):
        format_samples([Sample("l", name, "s", 1.0, Quality.GOOD, 1)])


def test_a_batch_writes_failed_and_partly_failed_reads_as_sample_by_sample() -> None:
    """A failed read (all bad, no value) takes the batch's own prefixes, a read with one value
    that is not finite the per-sample path: both give the lines the samples give one by one."""
    series = tuple(("plant", "l1", "vfd", f"r{i}") for i in range(3))
    batch = SampleBatch.of(series, [1.0, 2.0, 3.0], Quality.GOOD, 1_000)
    batch += SampleBatch.of(series, [math.nan] * 3, Quality.BAD, 2_000)
    batch += SampleBatch.of(series, [4.0, math.inf, 6.0], Quality.GOOD, 3_000)
    lines = format_samples(batch).split("\n")
    assert lines == format_samples(list(batch)).split("\n")
    assert lines[3:6] == [
        f"telemetry,line=l1,machine=vfd,signal=r{i},site=plant quality=2i 2000" for i in range(3)
    ]
