"""Fixtures of the plc_sim tests: the default line and free loopback ports."""

from __future__ import annotations

import pytest

from plc_sim.spec import LineSpec, load_line
from testbed.influxd import free_port as _unused_port


@pytest.fixture(scope="session")
def line() -> LineSpec:
    return load_line()


@pytest.fixture
def free_port() -> int:
    return _unused_port()


@pytest.fixture(scope="module")
def module_port() -> int:
    return _unused_port()
