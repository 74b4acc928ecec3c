"""A real libmodbus server (tests/second_stack/libmodbus) for the Modbus tests that need a
second stack: compiled once per module, started fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.second_stack import Running, libmodbus_binary, libmodbus_server


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return libmodbus_binary(tmp_path_factory.mktemp("libmodbus"))


@pytest.fixture
def device(binary: Path) -> Iterator[Running]:
    with libmodbus_server(binary) as server:
        yield server
