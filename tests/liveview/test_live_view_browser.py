"""The live view in a real browser during a real `shopfloor up` run.

`up` runs as a student starts it (its own process, the simulated PLCs on sockets, the connectors,
the SQLite historian, detection with models it trains on first start), with a line file that
schedules a conveyor jam FAULT_AT_S into the run. Headless chromium opens the URL `up` prints
and must see what a student would: the machines of the line with their states, values that
change, the injected fault and, within the detection delay, the anomaly episode beside it with
its top signal and severity, the PLC alarm the jam raises, and the connectors' delivery
figures. Ctrl-C then stops `up` with its summary.

The screenshot of the page with the episode on it is the picture at the top of README.md: with
SHOPFLOOR_UPDATE_DOC_IMAGES=1 it is written to docs/images/; otherwise the committed one is
checked to be a PNG of the page's size that the README shows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from plc_sim.spec import DEFAULT_LINE, load_line
from testbed.browser import chromium
from testbed.influxd import free_port
from tests.ctrl_c import default_sigint
from tests.docs.test_picture import png_size

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).parents[2]
IMAGE = ROOT / "docs" / "images" / "live-view.png"
UPDATE = os.environ.get("SHOPFLOOR_UPDATE_DOC_IMAGES") == "1"
VIEWPORT = {"width": 1400, "height": 1020}
MAX_IMAGE_BYTES = 400_000

FAULT_AT_S = 30.0
# as in tests/e2e/test_up_detection.py: the detector's delay for an abrupt fault, and what the
# online path adds (a poll, windows scored 2 s late and once a second)
ABRUPT_DELAY_S = 5.0
ONLINE_SLACK_S = 5.0
JAM_SIGNALS = {"current_a", "speed_hz"}
START_TIMEOUT_S = 60.0  # training the models on first start, then the servers


@dataclass
class Run:
    process: subprocess.Popen[str]
    url: str
    out: Path
    err: Path


def _wait_for_url(out: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(r"live view: (http://\S+)", out.read_text())
        if found:
            return found.group(1)
        assert process.poll() is None, f"up stopped: {out.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"up printed no live view URL: {out.read_text()}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """`up` with a conveyor jam FAULT_AT_S after its start, until a test stops it."""
    folder = tmp_path_factory.mktemp("view")
    line = yaml.safe_load(DEFAULT_LINE.read_text())
    line["faults"] = [
        {
            "at_s": FAULT_AT_S,
            "machine": "conveyor",
            "fault": "conveyor_jam",
            "severity": 1.0,
            "duration_s": 120,
        }
    ]
    (folder / "line.yaml").write_text(yaml.safe_dump(line, sort_keys=False))
    out, err = folder / "out.txt", folder / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "shopfloor.cli", "up", "--line", str(folder / "line.yaml")),
                *("--historian", f"sqlite:{folder / 'line.db'}", "--duration", "170s"),
                *("--opcua-port", str(free_port()), "--modbus-port", str(free_port())),
                *("--models", str(folder / "models"), "--spool", str(folder / "spool")),
            ],
            stdout=stdout,
            stderr=stderr,
            text=True,
            preexec_fn=default_sigint,
        )
    try:
        yield Run(process, _wait_for_url(out, process), out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def page(run: Run) -> Iterator[Page]:
    with chromium() as browser:
        yield _open(browser, run.url)


def _open(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    return page


def test_up_says_where_to_look(run: Run) -> None:
    printed = run.out.read_text()
    assert re.search(r"live view: http://127\.0\.0\.1:\d+/", printed)
    assert "bin/shopfloor query" in printed
    assert "bin/shopfloor report" in printed
    assert "Ctrl-C stops" in printed
    assert "scheduled fault: conveyor_jam on conveyor at 0:30 for 2:00" in printed


def test_the_page_draws_every_machine_of_the_line_with_its_state(page: Page) -> None:
    machines = page.locator("svg#line g.machine")
    expect(machines).to_have_count(len(load_line().machines), timeout=15_000)
    assert machines.evaluate_all("gs => gs.map(g => g.dataset.machine)") == list(
        load_line().machines
    )
    states = set(machines.evaluate_all("gs => gs.map(g => g.dataset.state)"))
    assert states <= {"running", "idle", "stopped", "faulted"}, states
    assert "running" in states


def test_the_values_on_the_page_change_while_it_is_open(page: Page) -> None:
    # the page opens on a flagged machine if there is one by then: ask for the pasteurizer
    page.locator('svg#line g.machine[data-machine="pasteurizer"]').click()
    temperature = page.locator('.chart[data-signal="product_temp_c"] .value')
    expect(temperature).to_have_text(re.compile(r"^\d+(\.\d+)?\u00a0°C$"), timeout=15_000)
    first = temperature.text_content()
    expect(temperature).not_to_have_text(first or "", timeout=15_000)


def test_the_connectors_show_their_delivery(page: Page) -> None:
    rows = page.locator("#connectors tbody tr")
    expect(rows).to_have_count(2, timeout=30_000)  # the OPC UA and the Modbus connector
    expect(rows.locator("td.rate").first).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=30_000)
    for row in rows.all():
        expect(row).to_contain_text("connected")


def test_the_injected_jam_becomes_an_episode_beside_it_within_the_detection_delay(
    run: Run, page: Page
) -> None:
    fault = page.locator('#episodes tbody tr[data-machine="conveyor"]').first
    expect(fault.locator("td.fault")).to_contain_text("conveyor_jam", timeout=60_000)
    expect(fault).to_have_class(re.compile("has-episode"), timeout=30_000)
    delay = float(fault.locator("td.num").text_content().removesuffix(" s"))  # type: ignore[union-attr]
    assert 0 <= delay <= ABRUPT_DELAY_S + ONLINE_SLACK_S
    assert fault.locator("td.top-signal").text_content() in JAM_SIGNALS
    expect(fault.locator("td.severity .sev")).to_have_text(
        re.compile(r"^\d+\.\d (low|high|critical)$")
    )
    conveyor = page.locator('svg#line g.machine[data-machine="conveyor"]')
    expect(conveyor).to_contain_text("ANOMALY")


def test_the_jam_raises_the_conveyors_overcurrent_alarm_on_the_page(page: Page) -> None:
    """The simulator's limit alarm, through the OPC UA connector's alarm subscription and the
    historian: active, critical (OPC UA severity 850), not acknowledged, in the journal too."""
    active = page.locator(
        '#alarms-active tbody tr[data-machine="conveyor"][data-condition="Overcurrent"]'
    )
    expect(active).to_have_count(1, timeout=30_000)
    expect(active.locator("td.level .sev")).to_have_text("critical")
    expect(active.locator("td.acked")).to_have_text("no")
    raised = page.locator('#alarms-journal tbody tr[data-condition="Overcurrent"] td.state')
    expect(raised.first).to_have_text("ACTIVE")


def test_default_settings_do_not_warn_about_themselves(run: Run) -> None:
    """The connectors `up` configures for its own line log no warning about that
    configuration (it once asked the simulator to sample faster than it can)."""
    logged = run.err.read_text()
    assert "WARNING connectors." not in logged, logged


def test_the_picture_in_the_readme_is_this_page(page: Page, tmp_path: Path) -> None:
    page.locator('svg#line g.machine[data-machine="conveyor"]').click()
    expect(page.locator("#trend-machine")).to_have_text("conveyor")
    expect(page.locator('.chart[data-signal="speed_hz"] .value')).to_contain_text("Hz")
    page.wait_for_timeout(3000)  # a few more seconds of trend after the jam
    target = IMAGE if UPDATE else tmp_path / IMAGE.name
    page.screenshot(path=str(target), full_page=False)
    assert png_size(target) == (VIEWPORT["width"], VIEWPORT["height"])
    assert png_size(IMAGE) == png_size(target)
    assert IMAGE.stat().st_size <= MAX_IMAGE_BYTES
    assert f"]({IMAGE.relative_to(ROOT)})" in (ROOT / "README.md").read_text()


def test_ctrl_c_stops_up_with_the_summary(run: Run) -> None:
    run.process.send_signal(signal.SIGINT)
    run.process.wait(timeout=30)
    *_, status, detection = run.out.read_text().splitlines()
    assert re.search(r"stored \d+ samples .* in sqlite:", status)
    assert re.search(r"windows scored, \d+ above threshold, [1-9]\d* episodes", detection)
    assert "Traceback" not in run.err.read_text()
