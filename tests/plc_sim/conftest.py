"""Fixtures of the plc_sim tests: the default line and free loopback ports."""

from __future__ import annotations

import socket

import pytest

from plc_sim.spec import LineSpec, load_line


@pytest.fixture(scope="session")
def line() -> LineSpec:
    return load_line()


def _unused_port() -> int:
    """A port nothing listens on right now (the OS picks it; we release it for the server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return _unused_port()


@pytest.fixture(scope="module")
def module_port() -> int:
    return _unused_port()
