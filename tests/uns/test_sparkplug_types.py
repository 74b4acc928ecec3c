"""Every Sparkplug B datatype from an edge node we did not write, stored as docs/data-model.md
says, in SQLite and InfluxDB alike: each row of its "Sparkplug B datatypes" table is a test here.

The edge is tests/uns/sparkplug_edge.py (pysparkplug, in its own venv) publishing at QoS 0
through a real Mosquitto. Two `ingest` workers in two share groups take every message, one
into SQLite, one into a real influxd; the scenario runs once for the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.sample import Point
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import open_historian
from testbed.mosquitto import Mosquitto
from tests.conftest import fresh_database
from tests.e2e.test_line import running
from tests.eventually import eventually
from tests.uns.conftest import SPARKPLUG_PYTHON
from uns.broker import open_broker
from uns.ingest import MqttIngest

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb]
EDGE = Path(__file__).with_name("sparkplug_edge.py")
T0_MS = 1_796_000_000_000
BIRTH, DATA = T0_MS * 10**6, (T0_MS + 1000) * 10**6
BACKENDS = ("sqlite", "influxdb")
BEFORE_NDEATH = 52  # readings of the two DBIRTHs, the DDATA and the DDEATH (docstring above)
NDEATH_MARKS = 26  # every stored signal of Filler (25) and Capper (1)


@dataclasses.dataclass
class Run:
    points: dict[str, list[Point]]  # backend -> every telemetry point
    bad_tags_after_ddeath: dict[str, str]
    workers: list[MqttIngest]
    log: list[str]
    query: list[dict[str, Any]]  # `shopfloor query --json` of the SQLite file before the NDEATH
    table: str  # and `shopfloor query`


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _scenario(broker_url: str, influx_url: str, folder: Path) -> Run:
    base = open_broker(f"{broker_url}?group=PlantB")
    sqlite_url = f"sqlite:{folder / 'h.db'}"
    stores = {"sqlite": open_historian(sqlite_url), "influxdb": open_historian(influx_url)}
    writers = {
        name: HistorianWriter(store, spool=Spool(folder / name), flush_interval_s=0.05)
        for name, store in stores.items()
    }
    workers = [
        MqttIngest(
            dataclasses.replace(base, share=f"hist-{name}"),
            writers[name].put_points,
            client_id=f"w-{name}",
        )
        for name in BACKENDS
    ]
    agents = [Agent([w], writers[name]) for w, name in zip(workers, BACKENDS, strict=True)]

    async def stored(count: int) -> None:
        """Until each backend holds `count` telemetry points (every reading has its own time)."""
        for _ in range(200):
            got = [len(await store.points("telemetry")) for store in stores.values()]
            if min(got) >= count:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{got} telemetry points stored, not {count}")

    async with contextlib.AsyncExitStack() as stack:
        for store in stores.values():
            await stack.enter_async_context(store)
        await stack.enter_async_context(running(*(a.run() for a in agents)))
        await eventually(lambda: all(w.stats.connected for w in workers), "ingest subscribed")
        edge = await asyncio.create_subprocess_exec(
            SPARKPLUG_PYTHON,
            EDGE,
            str(base.port),
            str(T0_MS),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert edge.stdin is not None and edge.stdout is not None
        assert (await edge.stdout.readline()).strip() == b"published"
        await stored(BEFORE_NDEATH)
        after_ddeath = dict(workers[0].stats.bad_tags)
        query, table = await asyncio.gather(
            asyncio.to_thread(_query, sqlite_url, "--json"), asyncio.to_thread(_query, sqlite_url)
        )
        edge.stdin.write(b"stop\n")
        await edge.stdin.drain()
        assert await asyncio.wait_for(edge.wait(), 10) == 0
        total = BEFORE_NDEATH + NDEATH_MARKS
        await stored(total)
        assert [w.stats.samples for w in workers] == [total, total]  # and nothing else
        points = {name: await store.points("telemetry") for name, store in stores.items()}
    return Run(points, after_ddeath, workers, [], json.loads(query), table)


def _query(url: str, *options: str) -> str:
    command = [sys.executable, "-m", "shopfloor.cli", "query", "--historian", url, *options]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def run(influxdb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    if not SPARKPLUG_PYTHON.exists():
        pytest.fail(f"{SPARKPLUG_PYTHON} is missing: bin/test makes it", pytrace=False)
    lines = _Lines()
    logging.getLogger("uns").addHandler(lines)
    try:
        with Mosquitto() as broker, fresh_database(influxdb_url) as influx_url:
            folder = tmp_path_factory.mktemp("sparkplug-types")
            result = asyncio.run(_scenario(broker.url, influx_url, folder))
    finally:
        logging.getLogger("uns").removeHandler(lines)
    result.log = lines.lines
    yield result


def readings(run: Run, backend: str, machine: str, signal: str) -> list[tuple[int, dict]]:
    """(time, fields) of one series, in time order."""
    return [
        (p.ts, dict(p.fields))
        for p in run.points[backend]
        if p.tags["machine"] == machine and p.tags["signal"] == signal
    ]


# One row of the table each: signal -> (fields at the DBIRTH, fields at the DDATA)
ROWS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "Int8, Int16, Int32, Int64": {
        "Small": ({"value": -6.0}, {"value": 127.0}),
        "Short": ({"value": -300.0}, {"value": 300.0}),
        "Count": ({"value": 1001.0}, {"value": -6.0}),
        "Total": ({"value": -5e9}, {"value": float(2**40)}),
    },
    "UInt8, UInt16, UInt32, UInt64": {
        "UByte": ({"value": 250.0}, {"value": 1.0}),
        "UShort": ({"value": 65535.0}, {"value": 2.0}),
        "UInt": ({"value": 4e9}, {"value": 3.0}),
        "ULong": ({"value": float(2**53)}, {"value": 4.0}),
    },
    "Float, Double": {
        "Motor_Temperature_c": ({"value": 71.5}, {"value": 72.25}),
        "Motor_Speed_rpm": ({"value": 1450.5}, {"value": 1500.25}),
        "Pressure_psi": ({"value": 30.5}, {"value": 31.0}),
    },
    "Boolean": {"Running": ({"value": 1.0}, {"value": 0.0})},
    "String, Text, UUID": {
        "Batch_Id": ({"text": "B-2026-001"}, {"text": 'B-17 "quoted"'}),
        "Operator": ({"text": "Jürgen"}, {"text": "Ana"}),
        "Lot": ({"text": "0d3c2f4e-8a1b-4c5d-9e6f-7a8b9c0d1e2f"}, {"text": "x"}),
    },
    "DateTime": {
        "Started": ({"text": "2026-12-07T21:00:00.125Z"}, {"text": "2026-12-07T21:00:00.125Z"})
    },
    "Int8Array ... DoubleArray, BooleanArray": {
        "Profile[0]": ({"value": 1.5}, {"value": 4.5}),
        "Profile[2]": ({"value": 3.5}, {"value": 6.5}),
        "Flags[0]": ({"value": 1.0}, {"value": 0.0}),
        "Flags[1]": ({"value": 0.0}, {"value": 1.0}),
    },
    "StringArray, DateTimeArray": {
        "Names[0]": ({"text": "a"}, {"text": "c"}),
        "Names[1]": ({"text": "b"}, {"text": "d"}),
    },
    "null (is_null)": {"Nothing": ({"value": 1.0}, {})},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row", ROWS)
def test_each_datatype_is_stored_as_the_table_says(run: Run, row: str, backend: str) -> None:
    for signal, (born, data) in ROWS[row].items():
        got = readings(run, backend, "Filler", signal)
        quality = 2 if row.startswith("null") else 0
        assert got[:2] == [
            (BIRTH, {"quality": 0} | born),
            (DATA, {"quality": quality} | data),
        ], signal


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_are_refused_loudly_once(run: Run, backend: str) -> None:
    assert readings(run, backend, "Filler", "Blob") == []
    said = [line for line in run.log if "Blob" in line]
    assert said == ["not stored: Blob: Bytes has no place in the data model"] * 2  # per worker
    assert all(w.stats.errors == 1 for w in run.workers)


def test_names_keep_no_path_separator_and_carry_engunit_units(run: Run) -> None:
    signals = {p.tags["signal"] for p in run.points["sqlite"]}
    assert not [s for s in signals if "/" in s]
    assert {"Motor_Temperature_c", "Motor_Speed_rpm", "Pressure_psi", "Batch_Id"} <= signals
    units = {r["signal"]: r["unit"] for r in run.query}
    assert units["Motor_Temperature_c"] == "°C" and units["Motor_Speed_rpm"] == "rpm"


@pytest.mark.parametrize("backend", BACKENDS)
def test_ddeath_and_ndeath_mark_their_signals_bad(run: Run, backend: str) -> None:
    capper = readings(run, backend, "Capper", "Count")
    assert capper[0] == (BIRTH, {"quality": 0, "value": 7.0})
    assert [fields for _, fields in capper[1:]] == [{"quality": 2}] * 2  # DDEATH, NDEATH
    for p in run.points[backend]:
        if p.tags["machine"] == "Filler":  # the newest reading of each signal: the NDEATH's
            last = readings(run, backend, "Filler", p.tags["signal"])[-1]
            assert last[0] > DATA and last[1] == {"quality": 2}, p.tags["signal"]
    assert run.bad_tags_after_ddeath == {
        "Capper/Count": "PlantB/Line7/Capper: DDEATH (the device is offline)"
    }
    reasons = set(run.workers[0].stats.bad_tags.values())
    assert reasons == {"PlantB/Line7: NDEATH (bdSeq 0: the edge node is offline)"}


def test_query_shows_text_and_numbers(run: Run) -> None:
    shown = {r["signal"]: r for r in run.query if r["machine"] == "Filler"}
    assert shown["Batch_Id"]["text"] == 'B-17 "quoted"' and shown["Batch_Id"]["value"] is None
    assert shown["Started"]["text"] == "2026-12-07T21:00:00.125Z"
    assert shown["Count"]["value"] == -6.0 and shown["Count"]["text"] is None
    rows = {line.split()[1]: line for line in run.table.splitlines()[1:]}
    assert '"B-17 \\"quoted\\""' in rows["Batch_Id"] and " -6 " in rows["Count"]
    assert " - " in rows["Nothing"]  # null: bad, no value
