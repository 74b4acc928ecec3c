"""Embedded SQLite historian, the default backend: nothing to install for a student.

Layout, driven by `core.schema`:
- `telemetry` is normalised: `telemetry_series(id, site, line, machine, signal)` plus
  `telemetry(series, time, value, quality, text)` keyed by (series, time). Rows stay small, and
  `latest` is one index probe per series instead of a scan of all history. The view
  `telemetry_points` joins them back for `points`.
- every other measurement is one table: tag columns ('' for an absent tag), `time` in ns and
  one column per field, keyed by (tags..., time).

Writing the same series and timestamp again updates the fields it carries and keeps the
others, which is what InfluxDB does (a bad-quality sample has no value: the stored value
stays). WAL mode lets `shopfloor query` read in another process while `shopfloor up` writes.

sqlite3 objects must stay on the thread that made them, so every call runs on one dedicated
worker thread that owns the connection; a batch is one executemany in one transaction, so a
cancelled write leaves the batch either fully stored or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from core.private_files import create_private
from core.sample import Point, Sample, quality_without_value
from core.schema import (
    MEASUREMENTS,
    TELEMETRY,
    Measurement,
    check_tags,
    coerce_field,
    telemetry_quality,
    typed_fields,
)
from core.schema import measurement as model_of
from core.storage import Historian, HistorianError, Reading

T = TypeVar("T")
SeriesKey = tuple[str, str, str, str]
# (series key, time ns, value or None, quality or None, text or None)
TelemetryRow = tuple[SeriesKey, int, float | None, int | None, str | None]

_SQL_TYPES = {float: "REAL", int: "INTEGER", bool: "INTEGER", str: "TEXT"}
_TELEMETRY_VIEW = "telemetry_points"
_SERIES_COLUMNS = ", ".join(TELEMETRY.tags)


# SQLITE_BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN: conditions that may pass by themselves.
_TRANSIENT_CODES = frozenset({5, 6, 7, 10, 13, 14})


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _schema() -> list[str]:
    tag_defs = ", ".join(f"{_ident(t)} TEXT NOT NULL" for t in TELEMETRY.tags)
    statements = [
        f"CREATE TABLE IF NOT EXISTS telemetry_series (id INTEGER PRIMARY KEY, {tag_defs},"
        f" UNIQUE ({_SERIES_COLUMNS}))",
        "CREATE TABLE IF NOT EXISTS telemetry (series INTEGER NOT NULL, time INTEGER NOT NULL,"
        " value REAL, quality INTEGER, text TEXT, PRIMARY KEY (series, time)) WITHOUT ROWID",
    ]
    for model in MEASUREMENTS.values():
        if model is TELEMETRY:
            continue
        columns = [f"{_ident(t)} TEXT NOT NULL DEFAULT ''" for t in model.tags]
        columns.append("time INTEGER NOT NULL")
        columns += [f"{_ident(f)} {_SQL_TYPES[kind]}" for f, kind in model.fields.items()]
        key = ", ".join(map(_ident, (*model.tags, "time")))
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {_ident(model.name)}"
            f" ({', '.join(columns)}, PRIMARY KEY ({key})) WITHOUT ROWID"
        )
    return statements


def _added_fields(conn: sqlite3.Connection) -> list[str]:
    """ALTER TABLEs for fields the data model gained since the file was created (e.g.
    `connector.spool_dropped`, `telemetry.text`): an older file keeps working and keeps its
    data. The telemetry view is made again with every field."""
    statements = []
    for model in MEASUREMENTS.values():
        table = _ident(model.name)
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        statements += [
            f"ALTER TABLE {table} ADD COLUMN {_ident(f)} {_SQL_TYPES[kind]}"
            for f, kind in model.fields.items()
            if f not in present
        ]
    view = {row[1] for row in conn.execute(f"PRAGMA table_info({_TELEMETRY_VIEW})")}
    if not view.issuperset(TELEMETRY.fields):
        fields = ", ".join(f"t.{_ident(f)}" for f in TELEMETRY.fields)
        statements += [
            f"DROP VIEW IF EXISTS {_TELEMETRY_VIEW}",
            f"CREATE VIEW {_TELEMETRY_VIEW} AS SELECT"
            f" {', '.join(f's.{t}' for t in TELEMETRY.tags)}, t.time, {fields}"
            " FROM telemetry t JOIN telemetry_series s ON s.id = t.series",
        ]
    return statements


def _upsert(table: str, keys: Sequence[str], fields: Sequence[str]) -> str:
    """INSERT that, on the same key, overwrites only the fields this write carries."""
    columns = [*keys, *fields]
    quoted = [_ident(f) for f in fields]
    updates = ", ".join(f"{f} = coalesce(excluded.{f}, {f})" for f in quoted)
    return (
        f"INSERT INTO {_ident(table)} ({', '.join(map(_ident, columns))})"
        f" VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(map(_ident, keys))}) DO UPDATE SET {updates}"
    )


_INSERT_TELEMETRY = _upsert(TELEMETRY.name, ("series", "time"), tuple(TELEMETRY.fields))
_INSERT_SERIES = f"INSERT OR IGNORE INTO telemetry_series ({_SERIES_COLUMNS}) VALUES (?, ?, ?, ?)"
_SELECT_SERIES = "SELECT id FROM telemetry_series WHERE " + " AND ".join(
    f"{t} = ?" for t in TELEMETRY.tags
)


def _where(
    tags: Mapping[str, str], start_ns: int | None, end_ns: int | None, prefix: str = ""
) -> tuple[str, list[object]]:
    conditions = [f"{prefix}{_ident(k)} = ?" for k in tags]
    params: list[object] = list(tags.values())
    if start_ns is not None:
        conditions.append(f"{prefix}time >= ?")
        params.append(int(start_ns))
    if end_ns is not None:
        conditions.append(f"{prefix}time < ?")
        params.append(int(end_ns))
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


class _Store:
    """The connection and the statements; lives on (and is only touched by) the worker thread."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        if path != ":memory:" and not path.startswith("file:"):
            # its -wal and -shm files take the database file's mode; a path that cannot be
            # created is left to sqlite3 to refuse, with its message
            with contextlib.suppress(OSError):
                create_private(path)
        self.conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        with self.conn:
            for statement in _schema():
                self.conn.execute(statement)
            for statement in _added_fields(self.conn):
                self.conn.execute(statement)
        self._series: dict[SeriesKey, int] = {}

    def series_id(self, key: SeriesKey) -> int:
        """Id of a telemetry series, created on first sight; cached per connection."""
        found = self._series.get(key)
        if found is None:
            self.conn.execute(_INSERT_SERIES, key)
            (found,) = self.conn.execute(_SELECT_SERIES, key).fetchone()
            self._series[key] = found
        return found

    def write_telemetry(self, rows: Sequence[TelemetryRow]) -> None:
        series = self._series
        try:
            with self.conn:
                self.conn.executemany(
                    _INSERT_TELEMETRY,
                    [
                        (series.get(key) or self.series_id(key), ts, value, quality, text)
                        for key, ts, value, quality, text in rows
                    ],
                )
        except BaseException:
            series.clear()  # ids created in the rolled-back transaction are gone
            raise

    def write_table(self, model: Measurement, rows: Sequence[Point]) -> None:
        """Rows grouped by the set of fields they carry (one statement per shape)."""
        by_shape: dict[tuple[str, ...], list[tuple[object, ...]]] = {}
        for point in rows:
            fields = typed_fields(point)
            if not fields:
                continue
            tags = tuple(point.tags.get(t, "") for t in model.tags)
            by_shape.setdefault(tuple(fields), []).append((*tags, point.ts, *fields.values()))
        with self.conn:
            for shape, values in by_shape.items():
                sql = _upsert(model.name, (*model.tags, "time"), shape)
                self.conn.executemany(sql, values)

    def query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()


def _telemetry_rows(
    samples: Sequence[Sample],
) -> list[TelemetryRow]:
    return [
        ((s.site, s.line, s.machine, s.signal), s.source_ts, s.value, int(s.quality), None)
        if s.value - s.value == 0  # false for NaN and +-inf: no value, and bad
        else (
            (s.site, s.line, s.machine, s.signal),
            s.source_ts,
            None,
            quality_without_value(s),
            None,
        )
        for s in samples
    ]


def _telemetry_point_rows(
    points: Sequence[Point],
) -> list[TelemetryRow]:
    rows = []
    for point in points:
        fields = typed_fields(point)
        if fields:
            key = (
                point.tags.get("site", ""),
                point.tags.get("line", ""),
                point.tags.get("machine", ""),
                point.tags.get("signal", ""),
            )
            value, quality = fields.get("value"), fields.get("quality")  # float, int: the model's
            text = fields.get("text")
            rows.append(
                (
                    key,
                    point.ts,
                    None if value is None else float(value),
                    None if quality is None else int(quality),
                    None if text is None else str(text),
                )
            )
    return rows


class SQLiteHistorian(Historian):
    """The historian in one SQLite file (created with its tables on first use)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 5_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-historian")
        self._store: _Store | None = None

    def __repr__(self) -> str:
        return f"SQLiteHistorian({self.path!r})"

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def _open(self) -> _Store:
        if self._store is None:
            self._store = _Store(self.path, self._busy_timeout_ms)
        return self._store

    async def _run(self, call: Callable[[_Store], T]) -> T:
        """Run `call(store)` on the worker thread; sqlite errors become HistorianError."""

        def job() -> T:
            try:
                return call(self._open())
            except sqlite3.Error as exc:
                # Locked, busy, disk full, I/O: may pass. Constraint or SQL errors: never.
                transient = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _TRANSIENT_CODES
                raise HistorianError(f"SQLite {self.path}: {exc}", retryable=transient) from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        if samples:
            rows = _telemetry_rows(samples)
            await self._run(lambda store: store.write_telemetry(rows))

    async def write_points(self, points: Sequence[Point]) -> None:
        by_measurement: dict[str, list[Point]] = {}
        for point in points:
            by_measurement.setdefault(point.measurement, []).append(point)
        for name, group in by_measurement.items():
            model = model_of(name)
            if model is TELEMETRY:
                rows = _telemetry_point_rows(group)
                await self._run(partial(_Store.write_telemetry, rows=rows))
            else:
                await self._run(partial(_Store.write_table, model=model, rows=group))

    async def latest(
        self,
        *,
        machine: str | None = None,
        signal: str | None = None,
        since_ns: int | None = None,
    ) -> list[Reading]:
        tags = {k: v for k, v in (("machine", machine), ("signal", signal)) if v is not None}
        where, params = _where(tags, None, None, prefix="s.")
        newest = "SELECT max(time) FROM telemetry WHERE series = s.id"
        if since_ns is not None:
            newest += " AND time >= ?"
            params.insert(0, int(since_ns))
        sql = (
            f"SELECT s.site, s.line, s.machine, s.signal, t.value, t.quality, t.time, t.text"
            f" FROM telemetry_series s JOIN telemetry t"
            f" ON t.series = s.id AND t.time = ({newest}){where}"
            f" ORDER BY s.site, s.line, s.machine, s.signal"
        )
        rows = await self._run(lambda store: store.query(sql, params))
        return [
            Reading(
                site=site,
                line=line,
                machine=machine_,
                signal=signal_,
                value=math.nan if value is None else value,
                quality=telemetry_quality(quality),
                ts=ts,
                text=text,
            )
            for site, line, machine_, signal_, value, quality, ts, text in rows
        ]

    async def points(
        self,
        measurement: str,
        *,
        tags: Mapping[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[Point]:
        model = model_of(measurement)
        tags = tags or {}
        check_tags(model, tags)
        table = _TELEMETRY_VIEW if model is TELEMETRY else model.name
        where, params = _where(tags, start_ns, end_ns)
        columns = ", ".join(map(_ident, (*model.tags, "time", *model.fields)))
        order = ", ".join(map(_ident, ("time", *model.tags)))
        sql = f"SELECT {columns} FROM {_ident(table)}{where} ORDER BY {order}"
        rows = await self._run(lambda store: store.query(sql, params))
        return [_point(model, row) for row in rows]

    async def close(self) -> None:
        if self._store is not None:
            await self._run(lambda store: store.close())
            self._store = None
        self._executor.shutdown(wait=False)


def _point(model: Measurement, row: tuple[Any, ...]) -> Point:
    n_tags = len(model.tags)
    return Point(
        measurement=model.name,
        tags={k: v for k, v in zip(model.tags, row[:n_tags], strict=True) if v},
        fields={
            k: coerce_field(kind, v)
            for (k, kind), v in zip(model.fields.items(), row[n_tags + 1 :], strict=True)
            if v is not None
        },
        ts=row[n_tags],
    )
