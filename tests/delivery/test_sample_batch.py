"""SampleBatch: reads as Samples, slices, and survives the spool's encoding 2 unchanged."""

from __future__ import annotations

import math

import pytest

from core.sample import Quality, Sample, SampleBatch
from delivery import spool_format as fmt
from historian.lineprotocol import format_samples

SERIES = (("s", "l", "m", "a"), ("s", "l", "m", "b"))


def batch() -> SampleBatch:
    samples = SampleBatch.of(SERIES, [1.0, 2.5], Quality.GOOD, 5)
    samples.add(SERIES, [math.nan, 3.0], Quality.BAD, 6)
    return samples


def test_reads_and_slices_as_samples():
    samples = batch()
    assert samples[1] == Sample("l", "m", "b", 2.5, Quality.GOOD, 5, "s")
    assert list(samples[0:2]) == list(samples)[0:2]
    assert samples[1:3].runs == [(SERIES[1:], 5), (SERIES[:1], 6)]
    assert format_samples(samples) == format_samples(list(samples))


def test_encoding_2_round_trip_and_encoding_1_still_read():
    samples = batch()
    record = fmt.frame(samples, ())
    head = fmt.header_at(record, 0)
    assert head is not None and head.encoding == fmt.ENCODING_BATCH
    decoded, points = fmt.decode(record[fmt.RECORD_HEADER_SIZE :], head)
    assert points == [] and format_samples(decoded) == format_samples(samples)
    old = fmt.frame(list(samples), ())
    old_head = fmt.header_at(old, 0)
    assert old_head is not None and old_head.encoding == fmt.ENCODING_JSON
    assert len(fmt.decode(old[fmt.RECORD_HEADER_SIZE :], old_head)[0]) == 4


def test_a_bad_quality_byte_is_refused():
    payload = bytearray(fmt.encode_batch(batch()))
    payload[-1] = 7
    with pytest.raises(ValueError, match="quality"):
        fmt.decode_batch(bytes(payload))
