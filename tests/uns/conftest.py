"""A real Mosquitto for every MQTT test, and the independent Sparkplug B host that checks what
is published (tests/uns/sparkplug_host.py in its own virtual environment, made by bin/test)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.mosquitto import INSTALL_HINT, Mosquitto

HOST_SCRIPT = Path(__file__).with_name("sparkplug_host.py")
SPARKPLUG_PYTHON = Path(__file__).resolve().parents[2] / ".venv-sparkplug" / "bin" / "python"


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail(f"these tests need a real broker: {INSTALL_HINT}", pytrace=False)
    with Mosquitto() as broker:
        yield broker


@contextlib.contextmanager
def sparkplug_host(broker: Mosquitto, folder: Path) -> Iterator[dict[str, Any]]:
    """Run the checking host while the block runs; the dict holds its report afterwards."""
    if not SPARKPLUG_PYTHON.exists():
        pytest.fail(
            f"{SPARKPLUG_PYTHON} is missing: bin/test makes it (pysparkplug in its own venv)",
            pytrace=False,
        )
    report_file = folder / "sparkplug-report.json"
    proc = subprocess.Popen(
        [
            SPARKPLUG_PYTHON,
            Path(__file__).with_name("sparkplug_host.py"),
            str(broker.port),
            report_file,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "subscribed"
    report: dict[str, Any] = {}
    try:
        yield report
    finally:
        time.sleep(0.5)  # the last messages in flight
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    report.update(json.loads(report_file.read_text()))
