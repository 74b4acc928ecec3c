"""Anomaly detection as part of `shopfloor up`: the models a student needs, and their scoring.

`up` runs the simulated line, so when its models folder is empty it trains them itself, on a
fresh fault-free run of the same line's process model with another seed (a few seconds, no
sockets), and keeps them for the next start. It trains with `shopfloor train --simulate` in a
child process: fitting needs scikit-learn (with scipy and pandas, about 130 MB), scoring does
not (analytics.scoring), so `up` never holds it. The online detector then scores the line as it
runs and writes `anomaly`, `events` (kind anomaly) and `kpi`, as `shopfloor detect` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from analytics.errors import ModelError
from analytics.model_store import ActiveVersions, MachineModel, has_models, load_models
from analytics.online import OnlineDetector
from core.storage import Historian
from plc_sim.spec import LineSpec
from shopfloor.downtime import reasons_option
from shopfloor.models import models_folder

TRAINING_S = 2 * 3600.0  # fault-free running the models of a fresh `up` learn from
TRAINING_SEED_OFFSET = 1000  # train on another seed than the line that is scored
FIRST_WINDOW_SLACK_S = 3.0  # the connectors' first poll and the detector's lag


def rated_outputs(spec: LineSpec) -> dict[str, float]:
    """Units per minute of every machine with a rated output (`nominal_bpm`) in the line file:
    OEE performance is measured against it from the first interval on, not against a rate
    observed over a minute or more of running."""
    return {
        name: float(machine.params.nominal_bpm)
        for name, machine in spec.machines.items()
        if hasattr(machine.params, "nominal_bpm")
    }


async def line_models(folder: Path, line: Path | None, seed: int) -> dict[str, MachineModel]:
    """The folder's models; trained first (and said so) if it holds none."""
    if not await asyncio.to_thread(has_models, folder):
        training_seed = seed + TRAINING_SEED_OFFSET
        print(
            f"set-up: training anomaly models on {TRAINING_S / 3600:.0f} h of simulated "
            f"fault-free running (seed {training_seed}) into {folder}/ (once) ...",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        await train_in_child(folder, line, training_seed)
        print(f"set-up: done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return await asyncio.to_thread(load_models, folder)


async def train_in_child(folder: Path, line: Path | None, seed: int) -> None:
    """`shopfloor train --simulate` in a child process (the one training path); its output
    is shown only if it fails. Cancelled (Ctrl-C), the child is stopped too."""
    command = [
        *(sys.executable, "-m", "shopfloor.cli", "--log-level", "warning", "train"),
        *("--simulate", f"{TRAINING_S:.0f}s", "--seed", str(seed), "--models", str(folder)),
        *(("--line", str(line)) if line is not None else ()),
    ]
    child = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        said = output.decode(errors="replace").strip()
        raise ModelError(f"training the line's models failed (exit {child.returncode}): {said}")


class LineDetection:
    """The online detector that `up` runs beside the line."""

    def __init__(self, args: argparse.Namespace, spec: LineSpec, historian: Historian) -> None:
        self.args = args
        self.spec = spec
        self.historian = historian
        self.models: dict[str, MachineModel] = {}
        self.folder: Path | None = None
        self.detector: OnlineDetector | None = None
        self.reasons = reasons_option(args.reasons)  # a bad file stops `up` before it starts

    async def prepare(self) -> None:
        """Load the models, training them first if the folder has none (before the line
        starts: training is CPU-bound and would starve the line's event loop)."""
        if not self.args.no_detect:
            self.folder = models_folder(self.args, self.historian)
            self.models = await line_models(self.folder, self.args.line, self.args.seed)

    async def run(self, ready: asyncio.Event) -> None:
        """Score from the first complete window on, until cancelled; nothing without models."""
        if not self.models or self.folder is None:
            return
        await ready.wait()
        first_window_s = max(model.window.window_s for model in self.models.values())
        await asyncio.sleep(first_window_s + FIRST_WINDOW_SLACK_S)
        self.detector = OnlineDetector(
            self.historian,
            self.models,
            kpi_interval_s=self.args.kpi_interval,
            ideal_rates_per_min=rated_outputs(self.spec),
            line_order=tuple(self.spec.machines),
            active_versions=ActiveVersions(self.folder, self.models),
            reasons=self.reasons,
        )
        try:
            await self.detector.run()
        finally:
            await self.detector.close()

    def anomalies(self) -> dict[str, str]:
        """Machine -> top signal of every anomaly episode under way, for the live status."""
        if self.detector is None:
            return {}
        return {m: episode.top_signal for m, episode in self.detector.open_episodes().items()}

    def summary(self) -> str:
        """One line on what the detector did ('' if it never started)."""
        return "" if self.detector is None else self.detector.stats.summary()
