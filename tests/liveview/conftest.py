"""The historian the live view's server tests read: SQLite, and a real InfluxDB."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def historian_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path_factory.mktemp('view') / 'line.db'}"
    return str(request.getfixturevalue("influx_db_url"))
