"""The shipped connectors file for the simulated line is current and reads every tag."""

from __future__ import annotations

from pathlib import Path

from connectors.config import load_config
from plc_sim.spec import load_line
from plc_sim.tags import exposed_tags
from shopfloor.simconfig import render_sim_connectors

SHIPPED = Path(__file__).parents[2] / "config" / "sim-line.yaml"


def test_shipped_sim_config_is_current() -> None:
    expected = render_sim_connectors(
        load_line(), "the default food-and-beverage line", "127.0.0.1", 4840, 5020
    )
    assert SHIPPED.read_text() == expected, (
        "config/sim-line.yaml is stale: `bin/shopfloor sim-config > config/sim-line.yaml`"
    )


def test_it_reads_every_exposed_tag_once() -> None:
    config = load_config(SHIPPED)
    read: list[tuple[str, str]] = []
    for entry in config.entries:
        if entry.type == "opcua":
            read += [(t.machine, t.signal) for t in entry.tags]
        else:
            read += [(d.machine, t.signal) for d in entry.devices for t in d.tags]
    assert sorted(read) == sorted((t.machine, t.signal) for t in exposed_tags(load_line()))
