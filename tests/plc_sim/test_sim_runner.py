"""The runner end to end: real-time ticks feeding both servers, ground truth, clean shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC

import pytest
from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient

from plc_sim.faults import FaultEvent
from plc_sim.runner import run_simulator
from plc_sim.spec import LineSpec
from testbed.influxd import free_port as _unused_port
from tests.ctrl_c import default_sigint

TIMEOUT_S = 10


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def _connected(client: Client) -> None:
    """Retry until the runner's server listens."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            try:
                await client.connect()
                return
            except OSError:
                await asyncio.sleep(0.1)


async def test_runner_serves_both_protocols_and_reports_faults(line: LineSpec, free_port: int):
    ua_port = free_port
    mb_port = _unused_port()
    events: list[tuple[FaultEvent, int]] = []

    async def record(event: FaultEvent, wall_ts_ns: int) -> None:
        events.append((event, wall_ts_ns))

    task = asyncio.create_task(
        run_simulator(
            line,
            seed=1,
            opcua=("127.0.0.1", ua_port),
            modbus=("127.0.0.1", mb_port),
            tick_s=0.05,
            speed=2.0,
            on_event=record,
        )
    )
    client = Client(f"opc.tcp://127.0.0.1:{ua_port}/shopfloor/", timeout=5)
    try:
        await _connected(client)
        async with asyncio.timeout(TIMEOUT_S):
            node = client.get_node("ns=2;s=line1.pasteurizer.hot_water_temp_c")
            first = await node.read_data_value()
            await asyncio.sleep(0.5)
            second = await node.read_data_value()
            await client.get_node("ns=2;s=line1.Simulator").call_method(
                "2:InjectFault", "conveyor", "conveyor_jam", 1.0, 0.0
            )
            modbus = AsyncModbusTcpClient("127.0.0.1", port=mb_port, timeout=2, retries=0)
            await modbus.connect()
            for _ in range(50):
                current = await modbus.read_holding_registers(2, count=1, device_id=1)
                if current.registers[0] >= 160:  # 16.0 A: the jammed drive at its limit
                    break
                await asyncio.sleep(0.1)
            modbus.close()
        assert second.Value.Value > first.Value.Value  # heating up, tick after tick
        age = time.time() - second.SourceTimestamp.replace(tzinfo=UTC).timestamp()
        assert 0 <= age < 1.0
        elapsed = (second.SourceTimestamp - first.SourceTimestamp).total_seconds()
        assert 0.35 < elapsed < 0.65  # paced by the tick, not by the reader
        assert current.registers[0] >= 160
    finally:
        await client.disconnect()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [(e.machine, e.fault, e.active) for e, _ in events] == [
        ("conveyor", "conveyor_jam", True)
    ]
    assert abs(events[0][1] - time.time_ns()) < 5e9
    assert _refuses(ua_port) and _refuses(mb_port)  # both servers closed


def test_command_line_runs_and_stops_cleanly_on_ctrl_c(free_port: int):
    process = subprocess.Popen(
        [sys.executable, "-m", "plc_sim", "--opcua-port", "0", "--modbus-port", str(free_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while _refuses(free_port):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert f"Modbus TCP: 127.0.0.1:{free_port}" in out
    assert "Traceback" not in err
    assert _refuses(free_port)


def test_command_line_explains_a_bad_line_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("line: line1\nmachines: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "plc_sim", "--line", str(bad)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 2
    assert f"{bad}: invalid line file" in done.stderr and "machines" in done.stderr
    assert "Traceback" not in done.stderr
