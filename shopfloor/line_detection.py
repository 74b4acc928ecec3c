"""Anomaly detection as part of `shopfloor up`: the models a student needs, and their scoring.

`up` runs the simulated line, so when its models folder is empty it trains them itself, on a
fresh fault-free run of the same line's process model with another seed (a few seconds, no
sockets), and keeps them for the next start. The online detector then scores the line as it
runs and writes `anomaly`, `events` (kind anomaly) and `kpi`, as `shopfloor detect` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from analytics.model_store import MODEL_SUFFIX, MachineModel, load_models
from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, train_models
from core.storage import Historian
from historian.sqlite import SQLiteHistorian
from linelab.simulated import simulated_telemetry
from plc_sim.spec import LineSpec
from shopfloor.detection import detection_summary
from shopfloor.downtime import reasons_option

TRAINING_S = 2 * 3600.0  # fault-free running the models of a fresh `up` learn from
TRAINING_SEED_OFFSET = 1000  # train on another seed than the line that is scored
FIRST_WINDOW_SLACK_S = 3.0  # the connectors' first poll and the detector's lag


def models_folder(args: argparse.Namespace, historian: Historian) -> Path:
    """--models, else `models/` next to the SQLite file, else in the working directory."""
    if args.models is not None:
        return args.models
    if isinstance(historian, SQLiteHistorian):
        return Path(historian.path).parent / "models"
    return Path("models")


def rated_outputs(spec: LineSpec) -> dict[str, float]:
    """Units per minute of every machine with a rated output (`nominal_bpm`) in the line file:
    OEE performance is measured against it from the first interval on, not against a rate
    observed over a minute or more of running."""
    return {
        name: float(machine.params.nominal_bpm)
        for name, machine in spec.machines.items()
        if hasattr(machine.params, "nominal_bpm")
    }


def line_models(folder: Path, line: Path | None, seed: int) -> dict[str, MachineModel]:
    """The folder's models; trained first (and said so) if it holds none. Blocking: seconds."""
    if not any(folder.glob(f"*{MODEL_SUFFIX}")):
        training_seed = seed + TRAINING_SEED_OFFSET
        print(
            f"set-up: training anomaly models on {TRAINING_S / 3600:.0f} h of simulated "
            f"fault-free running (seed {training_seed}) into {folder}/ (once) ...",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        telemetry = simulated_telemetry(TRAINING_S, seed=training_seed, line=line)
        train_models(telemetry, TrainingSettings(), folder)
        print(f"set-up: done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return load_models(folder)


class LineDetection:
    """The online detector that `up` runs beside the line."""

    def __init__(self, args: argparse.Namespace, spec: LineSpec, historian: Historian) -> None:
        self.args = args
        self.spec = spec
        self.historian = historian
        self.models: dict[str, MachineModel] = {}
        self.detector: OnlineDetector | None = None
        self.reasons = reasons_option(args.reasons)  # a bad file stops `up` before it starts

    async def prepare(self) -> None:
        """Load the models, training them first if the folder has none (before the line
        starts: training is CPU-bound and would starve the line's event loop)."""
        if not self.args.no_detect:
            folder = models_folder(self.args, self.historian)
            self.models = await asyncio.to_thread(
                line_models, folder, self.args.line, self.args.seed
            )

    async def run(self, ready: asyncio.Event) -> None:
        """Score from the first complete window on, until cancelled; nothing without models."""
        if not self.models:
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
        return "" if self.detector is None else detection_summary(self.detector.stats)
