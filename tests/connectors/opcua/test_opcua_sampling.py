"""Sampling that a server can take, against node-opcua (it announces MinSupportedSampleRate
100 ms and reports its variables by exception: MinimumSamplingInterval 0).

The default asks for report by exception, so even thousands of tags cost the server nothing
between changes and every change arrives; a configuration that asks for more samples than the
server announces it takes, or more than servers take without strain, is warned about once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.connectors.opcua.test_opcua_pipeline import connector, run_for
from tests.connectors.opcua.test_opcua_scale import collect
from tests.second_stack import node_opcua_scale_server

pytestmark = pytest.mark.timeout(90)


def sampling_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "sample" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("items", "sampling_ms", "warned"),
    [
        (500, 50, "500 tags ask to be sampled more often than 10 times a second"),
        (2500, 100, "ask the server for 25,000 samples a second"),
    ],
)
async def test_asking_more_samples_than_the_server_takes_is_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, items: int, sampling_ms: int, warned: str
) -> None:
    with node_opcua_scale_server(tmp_path, items) as server:
        source = connector(server.endpoint, items, sampling_interval_ms=sampling_ms)
        await run_for(source, 4)
    (warning,) = sampling_warnings(caplog)  # once, though the tags take several sessions
    assert warned in warning


async def test_the_default_samples_by_exception_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = 2500
    with node_opcua_scale_server(tmp_path, items) as server:
        source = connector(server.endpoint, items, sampling_interval_ms=None)
        await collect(source, items)  # every tag 3 whole seconds in a row, within 60 s
    assert not sampling_warnings(caplog)
