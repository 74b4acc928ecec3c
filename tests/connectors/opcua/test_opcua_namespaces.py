"""Namespaces on node-opcua laid out like a Siemens S7-1500.

A server that renumbers its namespaces while the connector runs (restarted on the same port
with one more namespace registered first): an `ns=3` tag then names another PLC's node. It must
be marked bad with one line, never read from the wrong namespace; an `nsu=` tag follows its
namespace to its new index. `browse --emit-config` therefore writes `nsu=` ids, and only tags
that `check` accepts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import yaml

from connectors.opcua import Config, build
from core.sample import Quality
from testbed.influxd import free_port
from tests.connectors.opcua.opcua_testplc import Collector
from tests.connectors.opcua.test_opcua_node_server import cli
from tests.connectors.opcua.test_opcua_types import s7_entry
from tests.eventually import eventually
from tests.second_stack import node_opcua_s7_server

pytestmark = pytest.mark.timeout(120)
SIEMENS = "http://www.siemens.com/simatic-s7-opcua"


async def test_renumbered_namespace_marks_ns_tags_bad_once_and_nsu_tags_follow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with node_opcua_s7_server(tmp_path / "a", port=port) as server:
        entry = s7_entry(server)
        entry["tags"] = [
            {"machine": "motor1", "signal": "speed", "node": 'ns=3;s="DB_Line"."Motor1"."Speed"'},
            {"machine": "motor1", "signal": "count", "node": 'ns=3;s="DB_Line"."Motor1"."Count"'},
            {
                "machine": "motor1",
                "signal": "speed_by_uri",
                "node": f'nsu={SIEMENS};s="DB_Line"."Motor1"."Speed"',
            },
        ]
        source = build(Config.model_validate(entry), site="s", line="l")
        collector = Collector()
        task = asyncio.create_task(source.run(collector.emit))
        await collector.wait_for(
            lambda: collector.good_since(0, ["speed", "count", "speed_by_uri"])
        )
    try:
        before = len(collector.samples)
        with (
            caplog.at_level(logging.INFO, logger="connectors.opcua"),
            node_opcua_s7_server(tmp_path / "b", extra_ns=True, port=port),
        ):
            await collector.wait_for(
                lambda: any(
                    s.signal == "speed_by_uri" and s.quality is Quality.GOOD
                    for s in collector.samples[before:]
                ),
                within_s=30,
            )
            await asyncio.sleep(1)  # the session's first publishes
    finally:
        task.cancel()
        await asyncio.wait([task])
    after = collector.samples[before:]
    # The other PLC's node at index 3 holds 2450.5 and -1006: never stored, not even once.
    assert {
        s.value for s in after if s.quality is Quality.GOOD and s.signal != "speed_by_uri"
    } == set()
    assert {s.value for s in after if s.signal == "speed_by_uri" and s.quality is Quality.GOOD} == {
        1450.5
    }
    latest = collector.latest(before)
    assert latest["speed"].quality is Quality.BAD and latest["count"].quality is Quality.BAD
    said = [r.getMessage() for r in caplog.records if "renumbered" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith(
        f"s7: namespace 3 was {SIEMENS} and is urn:shopfloor-test:another-plc now"
    )
    assert said[0].endswith("; 2 tags marked BAD")
    assert "recovered" not in caplog.text
    # the first server's stop closed the session: said by the connector, no asyncua traceback
    assert [r.name for r in caplog.records if r.exc_info] == []
    assert source.stats.bad_tags["motor1/speed"].startswith("namespace 3 was")


async def test_browse_emits_nsu_ids_of_stored_types_that_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "plc.yaml"
    with node_opcua_s7_server(tmp_path) as server:
        assert await cli("browse", server.endpoint, "--emit-config", str(target)) == 0
        shown = capsys.readouterr()
        assert await cli("check", "--config", str(target)) == 0  # every emitted tag reads fine
    rows = {line.split()[0]: line for line in shown.out.splitlines() if line.strip()}
    assert "Float[10]" in rows["3:Profile"]
    assert "MotorMode {0: Stopped, 1: Running, 2: Fault}" in rows["3:Mode"]
    tags = yaml.safe_load(target.read_text())["connectors"][0]["tags"]
    nodes = {tag["signal"]: tag["node"] for tag in tags}
    assert nodes["speed"] == f'nsu={SIEMENS};s="DB_Line"."Motor1"."Speed"'
    assert all(node.startswith(f"nsu={SIEMENS};") for node in nodes.values())
    assert {"profile", "mode", "batch_id", "started", "operator", "lot"} <= set(nodes)
    assert "raw" not in nodes  # a ByteString: not stored, so not emitted
    assert 'left out ns=3;s="DB_Line"."Motor1"."Raw": ByteString is not stored' in shown.err


async def test_a_server_that_closes_the_session_is_said_once_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """node-opcua closes every session when it stops (BadSessionClosed to the publish loop)."""
    with node_opcua_s7_server(tmp_path) as server:
        source = build(Config.model_validate(s7_entry(server)), site="s", line="l")
        collector = Collector()
        task = asyncio.create_task(source.run(collector.emit))
        await collector.wait_for(lambda: collector.good_since(0, ["speed_rpm"]))
        start = len(caplog.records)
    try:
        with caplog.at_level(logging.INFO):
            await eventually(lambda: not source.stats.connected, "the loss noticed")
            await asyncio.sleep(3)  # asyncua's publish loop would log its traceback every second
    finally:
        task.cancel()
        await asyncio.wait([task])
    after = caplog.records[start:]
    assert [(r.name, r.getMessage()) for r in after if r.exc_info] == []
    said = [r.getMessage() for r in after if r.levelno >= logging.WARNING]
    assert len(said) <= 2, said  # the loss, and the server refusing connections since
