"""The picture in docs/anomaly-detection.md: what `shopfloor report` draws of the simulated line.

The line runs as `bin/shopfloor up` runs it (the built-in line file, seed 42, warmed up to its
running heat, the line file's own fault schedule: a conveyor bearing wearing from minute 5 for
ten minutes), but as the process model stepped in a loop (no sockets, no wall clock) for 30
minutes, its samples (as the connectors read them: Modbus registers rounded) and its fault
events written to a SQLite historian. The models are the ones `up` trains on its first start
(`shopfloor train --simulate 2h` with up's training seed), and `shopfloor report --machine
conveyor` draws the PNG.

With SHOPFLOOR_UPDATE_DOC_IMAGES=1 the test writes the picture to docs/images/ (as a 64-colour
PNG, to keep it small); otherwise it draws the same picture into a temporary folder and checks
that the committed one is a PNG of the same size, small enough, and shown by that page.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from analytics.model_store import model_for
from analytics.readback import fault_spans, offline_scores
from analytics.windows import read_telemetry
from core.sample import Point, Quality, Sample
from core.schema import EVENTS, EventKind
from historian import open_historian
from plc_sim.process import WARMUP_S, Simulator
from plc_sim.scenarios import on_the_wire
from plc_sim.spec import load_line
from shopfloor import cli
from shopfloor.line_detection import TRAINING_S, TRAINING_SEED_OFFSET

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "anomaly-detection.md"
IMAGE = ROOT / "docs" / "images" / "conveyor-bearing-wear.png"
UPDATE = os.environ.get("SHOPFLOOR_UPDATE_DOC_IMAGES") == "1"
MAX_BYTES = 200_000

MACHINE = "conveyor"
SEED = 42  # `shopfloor up`'s default
RUN_S = 30 * 60
T0 = 1_796_112_000  # 2026-12-01T08:00:00Z: simulation second s is stored at T0 + s
SINCE, UNTIL = "2026-12-01T08:00:00", "2026-12-01T08:30:00"
NS = 10**9
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails on anything that is not a whole PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", f"{path} is not a whole PNG"
    return struct.unpack(">II", data[16:24])


def record_the_line() -> tuple[list[Sample], list[Point]]:
    """The machine's samples at 1 s and every fault event of the line's first RUN_S seconds."""
    spec = load_line()
    sim = Simulator(spec, seed=SEED)
    sim.warm_up(WARMUP_S)  # as `up` does before its servers answer
    signals: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    events: list[Point] = []
    for _ in range(round(RUN_S / spec.tick_s)):
        sim.step(spec.tick_s)
        ts = round((T0 + sim.time_s) * NS)
        for (machine, signal), value in sim.values().items():
            if machine == MACHINE:
                signals.append(signal)
                values.append(value)
                stamps.append(ts)
        for event in sim.drain_events():
            tags = {"site": spec.site, "line": spec.line, "machine": event.machine}
            events.append(
                Point(
                    EVENTS.name,
                    {**tags, "kind": EventKind.FAULT.value},
                    {"text": event.text, "active": event.active},
                    round((T0 + event.time_s) * NS),
                )
            )
    names, read = np.array(signals), np.array(values)
    for signal in set(signals):
        read[names == signal] = on_the_wire(spec, MACHINE, signal, read[names == signal])
    samples = [
        Sample(spec.line, MACHINE, signal, float(value), Quality.GOOD, ts, site=spec.site)
        for signal, value, ts in zip(signals, read, stamps, strict=True)
    ]
    return samples, events


async def store(url: str, samples: list[Sample], events: list[Point]) -> None:
    async with open_historian(url) as historian:
        await historian.write_samples(samples)
        await historian.write_points(events)


async def what_the_report_shows(url: str, models: Path) -> tuple[list, list]:
    """The episodes and the true faults `report` draws (it scores offline, as here)."""
    since, until = T0, T0 + RUN_S
    model = model_for(models, MACHINE)
    assert model is not None
    async with open_historian(url) as historian:
        telemetry = (await read_telemetry(historian, since, until, machine=MACHINE))[MACHINE]
        faults = await fault_spans(historian, MACHINE, since, until)
    _, _, episodes = offline_scores(telemetry, model)
    return episodes, faults


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(the PNG `shopfloor report` wrote, the models folder, the historian URL)."""
    folder = tmp_path_factory.mktemp("picture")
    models = folder / "models"
    train = [
        "train",
        "--simulate",
        f"{TRAINING_S:.0f}s",
        "--seed",
        str(SEED + TRAINING_SEED_OFFSET),
    ]
    assert cli.main([*train, "--models", str(models)]) == 0
    url = f"sqlite:{folder / 'line.db'}"
    asyncio.run(store(url, *record_the_line()))
    out = folder / "report.png"
    report = ["report", "--machine", MACHINE, "--since", SINCE, "--until", UNTIL]
    assert cli.main([*report, "--models", str(models), "--historian", url, "--out", str(out)]) == 0
    return out, models, url


def test_the_picture_shows_the_bearing_fault_caught_on_its_signal(
    drawn: tuple[Path, Path, str],
) -> None:
    """What docs/anomaly-detection.md says you will see: the detector flags the conveyor, with
    vibration_mm_s as its top signal, once the line file's bearing fault has started and not
    before."""
    _, models, url = drawn
    episodes, faults = asyncio.run(what_the_report_shows(url, models))
    assert [f.fault for f in faults] == ["bearing_wear"]
    (fault,) = faults
    assert (fault.start - T0, fault.end - T0) == (300, 900)  # the line file's schedule
    assert len(episodes) == 1, episodes
    (episode,) = episodes
    assert episode.top_signal == "vibration_mm_s"
    assert fault.start <= episode.start < fault.start + 60  # within a minute of its start
    assert fault.end < episode.end < fault.end + 600  # a few minutes on, while the motor cools


def test_the_committed_picture_is_the_one_drawn_and_the_page_shows_it(
    drawn: tuple[Path, Path, str],
) -> None:
    out, _, _ = drawn
    if UPDATE:
        from PIL import Image  # matplotlib's own dependency

        IMAGE.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(out) as image:
            image.convert("RGB").quantize(colors=64).save(IMAGE, optimize=True)
    assert IMAGE.is_file(), f"no {IMAGE.relative_to(ROOT)}: run with SHOPFLOOR_UPDATE_DOC_IMAGES=1"
    assert png_size(IMAGE) == png_size(out)
    assert IMAGE.stat().st_size < MAX_BYTES
    assert f"]({IMAGE.relative_to(PAGE.parent).as_posix()})" in PAGE.read_text(encoding="utf-8")
