"""Coalescing: table-driven cases for the pure planner."""

from __future__ import annotations

import pytest

from connectors.modbus import Config, build
from connectors.modbus.config import Device, Table
from connectors.modbus.plan import Block, Span, coalesce, plan_device, split_request

# (case, spans as (address, width), max_count, max_gap, expected blocks)
# where a block is (address, count, indices of its spans)
COALESCE_CASES = [
    ("empty", [], 125, 0, []),
    ("one tag", [(7, 2)], 125, 0, [(7, 2, (0,))]),
    (
        "adjacent tags merge with no gap allowed",
        [(0, 1), (1, 2), (3, 4)],
        125,
        0,
        [(0, 7, (0, 1, 2))],
    ),
    ("hole of 1 splits when max_gap is 0", [(0, 1), (2, 1)], 125, 0, [(0, 1, (0,)), (2, 1, (1,))]),
    ("hole equal to max_gap is read through", [(0, 2), (10, 2)], 125, 8, [(0, 12, (0, 1))]),
    ("hole one above max_gap splits", [(0, 2), (11, 2)], 125, 8, [(0, 2, (0,)), (11, 2, (1,))]),
    (
        "unsorted input, members index the input",
        [(20, 1), (0, 1), (10, 1)],
        125,
        10,
        [(0, 21, (1, 2, 0))],
    ),
    ("exactly max_count fits", [(0, 2), (123, 2)], 125, 200, [(0, 125, (0, 1))]),
    (
        "same tags fit when the limit is one higher",
        [(0, 2), (124, 2)],
        126,
        200,
        [(0, 126, (0, 1))],
    ),
    (
        "wide tag at the boundary is never split",
        [(0, 2), (124, 2)],
        125,
        200,
        [(0, 2, (0,)), (124, 2, (1,))],
    ),
    (
        "float64 straddling the limit starts a new read",
        [(0, 1), (122, 4)],
        125,
        200,
        [(0, 1, (0,)), (122, 4, (1,))],
    ),
    (
        "long run cut greedily at the limit",
        [(i, 1) for i in range(10)],
        4,
        0,
        [(0, 4, (0, 1, 2, 3)), (4, 4, (4, 5, 6, 7)), (8, 2, (8, 9))],
    ),
    ("bits of one register share it", [(30, 1), (30, 1), (31, 1)], 125, 0, [(30, 2, (0, 1, 2))]),
    (
        "max_count 1 reads every register alone",
        [(0, 1), (1, 1)],
        1,
        0,
        [(0, 1, (0,)), (1, 1, (1,))],
    ),
]


@pytest.mark.parametrize(
    ("spans", "max_count", "max_gap", "expected"),
    [case[1:] for case in COALESCE_CASES],
    ids=[case[0] for case in COALESCE_CASES],
)
def test_coalesce(spans, max_count, max_gap, expected):
    blocks = coalesce([Span(a, w) for a, w in spans], max_count=max_count, max_gap=max_gap)
    assert blocks == [Block(*b) for b in expected]


def test_span_wider_than_max_count_is_refused():
    with pytest.raises(ValueError, match="wider"):
        coalesce([Span(0, 4)], max_count=2, max_gap=0)


def _device(unit: int, tags: list[dict], **limits) -> Device:
    return Device.model_validate({"unit": unit, "machine": "m", "tags": tags, **limits})


def test_tables_are_never_merged_and_offsets_are_known():
    device = _device(
        1,
        [
            {"signal": "a", "table": "holding", "address": 0, "type": "int16"},
            {"signal": "b", "table": "input", "address": 1, "type": "float32"},
            {"signal": "c", "table": "holding", "address": 3, "type": "uint32"},
            {"signal": "d", "table": "coil", "address": 0},
            {"signal": "e", "table": "discrete", "address": 0},
            {"signal": "f", "table": "coil", "address": 5},
        ],
        max_gap=8,
    )
    requests = plan_device(device)
    shape = [(r.table, r.address, r.count) for r in requests]
    assert shape == [
        (Table.HOLDING, 0, 5),
        (Table.INPUT, 1, 2),
        (Table.COIL, 0, 6),
        (Table.DISCRETE, 0, 1),
    ]
    offsets = {p.tag.signal: p.start for r in requests for p in r.tags}
    assert offsets == {"a": 0, "c": 3, "b": 0, "d": 0, "f": 5, "e": 0}


def test_alarms_share_the_reads_of_the_tags_and_stay_with_them_when_split():
    tags = [
        {"signal": "a", "table": "holding", "address": 0, "type": "int16"},
        {"signal": "b", "table": "holding", "address": 4, "type": "float32"},
    ]
    alarms = [
        {"condition": "Hot", "table": "holding", "address": 4, "bit": 2, "severity": 700},
        {"condition": "Word", "table": "holding", "address": 7, "equals": 3, "severity": 300},
        {"condition": "Stop", "table": "discrete", "address": 9, "severity": 900},
    ]
    device = Device.model_validate({"machine": "m", "tags": tags, "alarms": alarms, "max_gap": 3})
    holding, discrete = plan_device(device)
    assert (holding.address, holding.count, len(holding.tags)) == (0, 8, 2)
    assert [(p.alarm.condition, p.start) for p in holding.alarms] == [("Hot", 4), ("Word", 7)]
    assert (discrete.table, discrete.address, discrete.count, discrete.tags) == (
        Table.DISCRETE,
        9,
        1,
        (),
    )
    parts = split_request(holding, 4)
    assert [(r.address, r.count) for r in parts] == [(0, 1), (4, 4)]
    assert [(p.alarm.condition, p.start) for p in parts[1].alarms] == [("Hot", 0), ("Word", 3)]


def test_bit_tables_use_the_bit_limit():
    tags = [{"signal": f"s{i}", "table": "coil", "address": i * 10} for i in range(4)]
    requests = plan_device(_device(1, tags, max_gap=9, max_bits_per_read=20))
    assert [(r.address, r.count) for r in requests] == [(0, 11), (20, 11)]


def test_units_are_never_merged():
    tag = [{"signal": "a", "table": "holding", "address": 0, "type": "int16"}]
    config = Config.model_validate(
        {
            "type": "modbus",
            "name": "n",
            "url": "modbus://127.0.0.1",
            "devices": [
                {"unit": 1, "machine": "m1", "tags": tag, "max_gap": 100},
                {"unit": 2, "machine": "m2", "tags": tag, "max_gap": 100},
            ],
        }
    )
    requests = build(config, site="s", line="l").requests
    assert [(r.unit, r.address, r.count) for r in requests] == [(1, 0, 1), (2, 0, 1)]
