"""NaN and infinity from a PLC, end to end: float32 holding registers of pymodbus' own server
(a real socket), read by the Modbus connector, through the spool and the writer into each
backend. They are stored as bad quality with no value, never as good; the log says why."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.config import parse_config
from connectors.modbus.codec import DataType as T
from connectors.modbus.codec import encode
from core import sample as sample_module
from delivery.agent import Agent
from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import Historian, Quality
from tests.e2e.test_line import running
from tests.eventually import eventually

VALUES = {"nan_c": math.nan, "plus_inf_c": math.inf, "minus_inf_c": -math.inf, "fine_c": 1.5}


@pytest.fixture
async def plc() -> AsyncIterator[int]:
    """pymodbus' server, holding registers 1.. as float32 (ABCD): the port."""
    registers = [word for value in VALUES.values() for word in encode(value, T.FLOAT32)]
    device = SimDevice(1, simdata=[SimData(1, values=registers, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer([device], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield server.transport.sockets[0].getsockname()[1]
    finally:
        await server.shutdown()


def connectors_file(port: int) -> str:
    tags = "\n".join(
        f"      - {{signal: {name}, table: holding, address: {1 + 2 * i}, type: float32}}"
        for i, name in enumerate(VALUES)
    )
    return (
        "site: plant\nline: l1\nconnectors:\n- type: modbus\n  name: plc\n"
        f"  url: modbus://127.0.0.1:{port}\n  poll_interval_s: 0.1\n"
        f"  devices:\n  - unit: 1\n    machine: oven\n    tags:\n{tags}\n"
    )


async def test_nan_and_inf_from_a_plc_are_stored_bad_never_good(
    historian: Historian,
    plc: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sample_module, "_reported", set())  # logged once per process and series
    caplog.set_level(logging.WARNING, "core.sample")
    inputs = parse_config(connectors_file(plc), Path("plc.yaml")).build_inputs()
    writer = HistorianWriter(historian, spool=Spool(tmp_path / "spool"), flush_interval_s=0.05)
    async with running(Agent(inputs, writer).run()):
        await eventually(lambda: writer.stats.samples_written >= 4 * len(VALUES), "samples", 20)
    stored = {r.signal: r for r in await historian.latest(machine="oven")}
    assert set(stored) == set(VALUES)
    assert stored["fine_c"].quality == Quality.GOOD and stored["fine_c"].value == 1.5
    for name in ("nan_c", "plus_inf_c", "minus_inf_c"):
        assert stored[name].quality == Quality.BAD, name
        assert math.isnan(stored[name].value), name  # no value: read back as NaN
    for shown in ("oven/nan_c: the PLC sent nan", "plus_inf_c: the PLC sent inf", "sent -inf"):
        assert shown in caplog.text
