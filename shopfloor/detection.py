"""The detection commands: `train` models per machine, `detect` online, `report` as a PNG.

`train` learns what normal looks like, from a period the historian holds (--since/--until) or
from a fresh fault-free simulated one (--simulate 2h); each machine's model goes to the models
folder as its new active version (analytics.model_store). `detect` scores the line with those
models until stopped. `report` draws one machine's signals, score, flagged episodes and true
faults.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics.anomaly import AnomalyDetector
from analytics.detectors import DETECTORS, make_detector
from analytics.episodes import AlarmLogic
from analytics.features import WindowSpec
from analytics.model_store import ActiveVersions, load_models, model_for
from analytics.online import KPI_LOOKBACK_S, OnlineDetector
from analytics.readback import fault_spans, offline_scores, stored_scores
from analytics.training import (
    DEFAULT_ALARM,
    FALSE_ALARM_RATE,
    TrainingSettings,
    train_models,
)
from analytics.windows import detection_signals, read_telemetry
from core.storage import Historian
from historian import open_historian
from linelab.simulated import simulated_telemetry
from plc_sim.spec import LineSpecError
from shopfloor.downtime import reasons_option
from shopfloor.durations import parse_duration, parse_time
from shopfloor.options import (
    CommandError,
    add_duration,
    add_historian,
    add_kpi_interval,
    command,
    run_for,
)

USER_ERRORS = (LineSpecError,)  # a line file (--line) that cannot be used: its message, exit 2
REPORT_TIMEOUT_S = 300.0  # every historian read of one report together
STREAM_HOLD_S = 900.0  # from a broker, this much telemetry is kept beyond what the kpis read


async def train(args: argparse.Namespace) -> int:
    """Fit a model per machine on normal data and save it with its metadata."""
    settings = training_settings(args)
    if args.simulate:
        telemetry = await asyncio.to_thread(
            simulated_telemetry, args.simulate, seed=args.seed, line=args.line
        )
        source = f"{args.simulate:.0f} s of simulated fault-free running (seed {args.seed})"
    else:
        since, until = _time_range(args)
        async with open_historian(args.historian) as historian:
            telemetry = await read_telemetry(historian, since, until, timeout_s=600.0)
            source = f"{historian.describe()} from {_iso(since)} to {_iso(until)}"
        if not telemetry:
            raise CommandError(f"no telemetry in {source}; pick another --since/--until")
    saved, skipped = await asyncio.to_thread(train_models, telemetry, settings, args.models)
    print(f"trained on {source}:")
    for model in saved:
        print(
            f"  {model.machine}: {model.detector} on {len(model.signals)} signals "
            f"({', '.join(model.signals)}), threshold {model.threshold:.3g}"
        )
    for name, why in skipped.items():
        print(f"  {name}: skipped: {why}")
    print(f"models in {args.models}")
    return 0 if saved else 1


async def detect(args: argparse.Namespace) -> int:
    """Score the line online with the trained models until Ctrl-C or --duration."""
    reasons = reasons_option(args.reasons)
    models = load_models(args.models)
    async with open_historian(args.historian) as historian:
        source: Historian = historian
        feed = []
        if args.source:
            from uns.stream import (
                open_stream,  # the MQTT stack, loaded only when streaming from a broker
            )

            hold_s = (args.kpi_interval or 0.0) + KPI_LOOKBACK_S + STREAM_HOLD_S
            source, stream = open_stream(args.source, historian, hold_s=hold_s)
            feed.append(stream)
        detector = OnlineDetector(
            source,
            models,
            lag_s=args.lag,
            kpi_interval_s=args.kpi_interval,
            active_versions=ActiveVersions(args.models, models),
            reasons=reasons,
        )
        where = args.source or historian.describe()
        print(
            f"detecting anomalies on {', '.join(sorted(models))} from {where}; Ctrl-C stops",
            file=sys.stderr,
        )
        try:
            await run_for(args.duration, detector.run(), *feed)
        finally:
            await detector.close()
            print(detector.stats.summary())
    return 0


async def report(args: argparse.Namespace) -> int:
    """Draw one machine's signals, anomaly severity, episodes and true faults into a PNG."""
    # matplotlib (~30 MB) only for a report: `up` and `detect` share this module
    from analytics.report import render_report

    since, until = _time_range(args)
    model = model_for(args.models, args.machine)
    async with open_historian(args.historian) as historian, asyncio.timeout(REPORT_TIMEOUT_S):
        telemetry = (await read_telemetry(historian, since, until, machine=args.machine)).get(
            args.machine
        )
        if telemetry is None:
            raise CommandError(
                f"no telemetry of {args.machine!r} between {_iso(since)} and {_iso(until)}"
            )
        window = model.window if model else WindowSpec()
        frame = telemetry.frame(window)
        frame = telemetry.frame(window, model.signals if model else detection_signals(frame))
        scores, threshold, episodes = await stored_scores(historian, args.machine, since, until)
        if len(scores.times) == 0 and model is not None:
            scores, threshold, episodes = offline_scores(telemetry, model)
        faults = await fault_spans(historian, args.machine, since, until)
    title = f"{args.machine}: {_iso(since)} to {_iso(until)}"
    await asyncio.to_thread(
        render_report, frame, scores, threshold, episodes, faults, args.out, title=title
    )
    print(f"wrote {args.out}: {len(episodes)} flagged episodes, {len(faults)} true faults")
    return 0


def _time_range(args: argparse.Namespace) -> tuple[float, float]:
    if args.since is None:
        raise CommandError("say which period: --since TIME (and optionally --until TIME)")
    until = args.until if args.until is not None else time.time()
    if until <= args.since:
        raise CommandError("--until must be later than --since")
    return args.since, until


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def register(sub: Any) -> None:
    """Add train, detect and report to the `shopfloor` command line."""
    _add_train(sub)
    _add_detect(sub)
    _add_report(sub)


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        metavar="DIR",
        help="the models folder, a version history per machine (default: models)",
    )


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="start: an ISO time (UTC unless given) or a duration ago (e.g. 2h)",
    )
    parser.add_argument(
        "--until", type=parse_time, metavar="TIME", help="end, as --since (default: now)"
    )


def _add_train(sub: Any) -> None:
    parser = command(
        sub,
        "train",
        train,
        "Fit an anomaly model per machine on a normal period of the historian, or on a fresh "
        "fault-free simulated one, and save them with their metadata.",
    )
    _add_range(parser)
    parser.add_argument(
        "--simulate",
        type=parse_duration,
        metavar="TIME",
        help="train on this much simulated fault-free running instead (e.g. 2h)",
    )
    parser.add_argument(
        "--line", type=Path, metavar="FILE", help="line file for --simulate (default: built in)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for --simulate (default: 1)")
    add_training_options(parser)
    _add_models(parser)
    add_historian(parser)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """How models are fitted (`train` and `eval`); the defaults are TrainingSettings'."""
    defaults = TrainingSettings()
    window, alarm = defaults.window, {**DEFAULT_ALARM, **(defaults.alarm or {})}
    parser.add_argument(
        "--detector",
        type=_detector_name,
        default=defaults.detector,
        metavar="NAME",
        help=f"{', '.join(DETECTORS)}, or several joined by '+' (default: {defaults.detector})",
    )
    for flag, value, what in (
        ("--window", window.window_s, "feature window length"),
        ("--short-window", window.short_s, "short window at its end, for abrupt changes"),
        ("--step", window.step_s, "one score per step"),
    ):
        parser.add_argument(
            flag,
            type=parse_duration,
            default=value,
            metavar="TIME",
            help=f"{what} (default: {value:g}s)",
        )
    parser.add_argument(
        "--false-alarm-rate",
        type=float,
        metavar="RATE",
        help="threshold crossings per window of normal running "
        f"(default: {defaults.false_alarm_rate:g}; with eval --dataset, the share of normal rows "
        f"above the threshold, default {AnomalyDetector().false_alarm_rate:g})",
    )
    parser.add_argument(
        "--k", type=int, default=alarm["k"], help="windows over threshold that open an episode..."
    )
    parser.add_argument(
        "--n", type=int, default=alarm["n"], help="...within this many consecutive windows"
    )
    parser.add_argument(
        "--hold-off",
        type=parse_duration,
        default=alarm["hold_off_s"],
        metavar="TIME",
        help=f"quiet time that closes an episode (default: {alarm['hold_off_s']:g}s)",
    )


def training_settings(args: argparse.Namespace) -> TrainingSettings:
    """TrainingSettings from the options of add_training_options."""
    try:
        window = WindowSpec(window_s=args.window, step_s=args.step, short_s=args.short_window)
        AlarmLogic(args.k, args.n, args.hold_off)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    rate = FALSE_ALARM_RATE if args.false_alarm_rate is None else args.false_alarm_rate
    if not 0.0 < rate < 1.0:
        raise CommandError(f"--false-alarm-rate must be in (0, 1), got {rate:g}")
    return TrainingSettings(
        detector=args.detector,
        window=window,
        false_alarm_rate=rate,
        alarm={"k": args.k, "n": args.n, "hold_off_s": args.hold_off},
    )


def _detector_name(text: str) -> str:
    try:
        make_detector(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_detect(sub: Any) -> None:
    parser = command(
        sub,
        "detect",
        detect,
        "Score every machine that has a model, online: writes anomaly points, anomaly "
        "episodes as events, and OEE as kpi points.",
    )
    _add_models(parser)
    parser.add_argument(
        "--lag",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="score windows ending this long ago, so that late samples are in (default: 2)",
    )
    add_kpi_interval(parser, default="15m")
    parser.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="score the unified namespace on an MQTT broker instead of reading the historian "
        "(mqtt[s]://HOST:PORT?group=G, credentials as for --publish); the anomaly points still "
        "go to --historian",
    )
    add_historian(parser)
    add_duration(parser)


def _add_report(sub: Any) -> None:
    parser = command(
        sub,
        "report",
        report,
        "Draw a machine's signals, anomaly score and threshold, flagged episodes and true "
        "faults into a PNG.",
    )
    parser.add_argument("--machine", required=True, help="the machine to draw")
    _add_range(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the PNG to write")
    _add_models(parser)
    add_historian(parser)
