"""Fixtures for the OPC UA connector tests: a live test PLC and a sample collector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.connectors.opcua.opcua_testplc import Collector, TestPlc


@pytest.fixture
async def plc() -> AsyncIterator[TestPlc]:
    server = TestPlc()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def collector() -> Collector:
    return Collector()
