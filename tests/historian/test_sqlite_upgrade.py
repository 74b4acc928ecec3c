"""SQLite: a file made before the data model gained a field keeps working, with its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.sample import Point
from historian.sqlite import SQLiteHistorian

OLD_CONNECTOR_TABLE = (
    "CREATE TABLE connector (connector TEXT NOT NULL DEFAULT '',"
    " endpoint TEXT NOT NULL DEFAULT '', time INTEGER NOT NULL, connected INTEGER,"
    " samples INTEGER, errors INTEGER, reconnects INTEGER, latency_ms REAL, spool_bytes INTEGER,"
    " PRIMARY KEY (connector, endpoint, time)) WITHOUT ROWID"
)


async def test_a_file_without_spool_dropped_gains_it_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_CONNECTOR_TABLE)
        conn.execute("INSERT INTO connector VALUES ('modbus', 'tcp://plc', 1, 1, 5, 0, 0, 1.5, 0)")
    health = Point(
        "connector",
        {"connector": "modbus", "endpoint": "tcp://plc"},
        {"connected": True, "samples": 9, "spool_bytes": 10, "spool_dropped": 3},
        2,
    )
    async with SQLiteHistorian(str(path)) as store:
        await store.write_points([health])
        rows = await store.points("connector")
    assert [(p.ts, p.fields["samples"]) for p in rows] == [(1, 5), (2, 9)]
    assert rows[1].fields["spool_dropped"] == 3
