"""Every OPC UA built-in type a PLC exposes, read from node-opcua laid out like a Siemens S7-1500
and stored as docs/data-model.md says, in SQLite and InfluxDB alike: each row of its "OPC UA
built-in types" table is a test here.

Two connectors (one per backend) subscribe to the same server; the scenario runs once for the
module, then each row checks what both backends hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.opcua import Config, build
from core.sample import Point
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import open_historian
from tests.conftest import fresh_database
from tests.e2e.test_line import running
from tests.second_stack import Running, node_opcua_s7_server

pytestmark = [pytest.mark.influxdb, pytest.mark.timeout(120)]
BACKENDS = ("sqlite", "influxdb")
MEMBERS = {  # signal -> member of "DB_Line"."Motor1"
    "speed_rpm": "Speed",
    "temperature_c": "Temperature",
    "count": "Count",
    "small": "Small",
    "bottles": "Bottles",
    "total": "Total",
    "running": "Running",
    "batch_id": "BatchId",
    "operator": "Operator",
    "started": "Started",
    "lot": "Lot",
    "raw": "Raw",
    "profile": "Profile",
    "mode": "Mode",
}
# One row of the table each: signal -> the fields stored
ROWS: dict[str, dict[str, dict[str, Any]]] = {
    "SByte, Int32, Int64": {
        "small": {"value": -7.0},
        "count": {"value": -6.0},
        "total": {"value": -6.0},
    },
    "UInt32": {"bottles": {"value": 4000000001.0}},
    "Float, Double": {"speed_rpm": {"value": 1450.5}, "temperature_c": {"value": 72.25}},
    "Boolean": {"running": {"value": 1.0}},
    "String": {"batch_id": {"text": 'B-17 "quoted"'}},
    "LocalizedText": {"operator": {"text": "Jürgen"}},
    "DateTime": {"started": {"text": "2026-12-07T21:00:00.125Z"}},
    "Guid": {"lot": {"text": "0d3c2f4e-8a1b-4c5d-9e6f-7a8b9c0d1e2f"}},
    "Enumeration": {"mode": {"value": 1.0, "text": "Running"}},
    "array (Float[10])": {f"profile[{i}]": {"value": i + 0.5} for i in range(10)},
    "ByteString": {"raw": {}},  # refused: bad, no value
}
EXPECTED = {signal for row in ROWS.values() for signal in row}


def s7_entry(server: Running, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "opcua",
        "name": "s7",
        "endpoint": server.endpoint,
        "security": "none",
        "publishing_interval_ms": 200,
        "sampling_interval_ms": 100,
        "timeout_s": 3,
        "reconnect": {"min_s": 0.1, "max_s": 0.5},
        "tags": [
            {"machine": "motor1", "signal": s, "node": f'ns=3;s="DB_Line"."Motor1"."{m}"'}
            for s, m in MEMBERS.items()
        ],
        **overrides,
    }


@dataclasses.dataclass
class Run:
    points: dict[str, dict[str, Point]]  # backend -> signal -> its first point
    inputs: list[Any]  # the OpcUaInputs
    log: list[str]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _scenario(server: Running, influx_url: str, folder: Path) -> Run:
    stores = {
        "sqlite": open_historian(f"sqlite:{folder / 'h.db'}"),
        "influxdb": open_historian(influx_url),
    }
    inputs = [build(Config.model_validate(s7_entry(server)), site="s", line="l") for _ in BACKENDS]
    agents = [
        Agent(
            [source],
            HistorianWriter(stores[name], spool=Spool(folder / name), flush_interval_s=0.05),
        )
        for source, name in zip(inputs, BACKENDS, strict=True)
    ]
    found: dict[str, dict[str, Point]] = {}
    async with contextlib.AsyncExitStack() as stack:
        for store in stores.values():
            await stack.enter_async_context(store)
        await stack.enter_async_context(running(*(a.run() for a in agents)))
        for _ in range(300):
            for name, store in stores.items():
                found[name] = {}
                for point in await store.points("telemetry"):
                    found[name].setdefault(point.tags["signal"], point)
            if all(set(found[name]) >= EXPECTED for name in BACKENDS):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # a few more publishes: "not stored" must not be said again
    return Run(found, inputs, [])


@pytest.fixture(scope="module")
def run(influxdb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    lines = _Lines()
    logging.getLogger("connectors").addHandler(lines)
    try:
        folder = tmp_path_factory.mktemp("opcua-types")
        with node_opcua_s7_server(folder) as server, fresh_database(influxdb_url) as url:
            result = asyncio.run(_scenario(server, url, folder))
    finally:
        logging.getLogger("connectors").removeHandler(lines)
    result.log = lines.lines
    yield result


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row", ROWS)
def test_each_type_is_stored_as_the_table_says(run: Run, row: str, backend: str) -> None:
    for signal, fields in ROWS[row].items():
        point = run.points[backend].get(signal)
        assert point is not None, f"{signal} not stored"
        quality = 2 if row == "ByteString" else 0
        assert dict(point.fields) == {"quality": quality} | fields, signal
        assert point.ts > 0


def test_a_type_that_is_not_stored_is_said_once_not_counted_per_change(run: Run) -> None:
    said = [line for line in run.log if "raw" in line and "not stored" in line]
    assert said == ["s7: motor1/raw is BAD: values of type bytes are not stored"] * 2  # per input
    assert all(source.stats.errors == 1 for source in run.inputs)
    assert all(
        source.stats.bad_tags == {"motor1/raw": "values of type bytes are not stored"}
        for source in run.inputs
    )
