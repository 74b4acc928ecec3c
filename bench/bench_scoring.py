"""Scoring benchmark: machine-windows scored per second on one core, for every detector.

The default detector (baseline+pca, the one `train`, `detect`, `up` and `eval` use) comes first.

Run: .venv/bin/python bench/bench_scoring.py [--rows N] [--online N]
Trains each detector on the conveyor's windowed features from two simulated hours (as `shopfloor
eval` does), then measures on fresh fault-free rows:
- batch: score_samples + contributions on N rows at once (what `eval` and a catch-up do);
- online: one window at a time, features included (what `shopfloor detect` does every step):
  window_features over one window's frame, score_samples and contributions of that one row.
BLAS threads are pinned to 1 so the figure is one core's. Target (issue 3): >= 1,000/s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one core, as the target is stated

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402

from measure import Elapsed, timed  # noqa: E402

from analytics.detectors import DEFAULT_DETECTOR, DETECTORS, make_detector  # noqa: E402
from analytics.features import Frame, WindowSpec, window_features  # noqa: E402
from analytics.windows import detection_signals  # noqa: E402
from plc_sim.scenarios import labelled_run  # noqa: E402
from plc_sim.spec import load_line  # noqa: E402

MACHINE = "conveyor"
TARGET_PER_S = 1000.0


def conveyor_frames(spec: WindowSpec) -> tuple[Frame, Frame]:
    """Training and test frames of the conveyor's modelled signals."""
    line = load_line()
    frames = []
    for seed in (1, 2):
        run = labelled_run(line, seed=seed, duration_s=7200, dt_s=spec.period_s, settle_s=900)
        trace = run.machines[MACHINE]
        frames.append(Frame(run.times, trace.signals, trace.values))
    signals = detection_signals(frames[0])
    return tuple(  # type: ignore[return-value]
        Frame(f.times, signals, f.values[:, [f.signals.index(s) for s in signals]]) for f in frames
    )


def online(estimator: object, frame: Frame, spec: WindowSpec, count: int) -> Callable[[], None]:
    """One window per call, as the online detector scores each step."""
    width = round(spec.window_s / spec.period_s)

    def work() -> None:
        for end in range(width, width + count):
            window = Frame(
                frame.times[end - width : end], frame.signals, frame.values[end - width : end]
            )
            _, row, _ = window_features(window, spec)
            estimator.score_samples(row)  # type: ignore[attr-defined]
            estimator.contributions(row)  # type: ignore[attr-defined]

    return work


def report(name: str, mode: str, count: int, elapsed: Elapsed) -> str:
    rate = count / elapsed.cpu_s
    verdict = "ok" if rate >= TARGET_PER_S else "BELOW TARGET"
    return f"{name:<12} {mode:<7} {count:>7,} windows  {elapsed.rates(count)}  {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows in the batch measurement")
    parser.add_argument("--online", type=int, default=1000, help="windows scored one at a time")
    args = parser.parse_args()
    spec = WindowSpec()
    train, test = conveyor_frames(spec)
    _, features, names = window_features(train, spec)
    _, fresh, _ = window_features(test, spec)
    rows = fresh[: args.rows]
    print(
        f"{MACHINE}: {len(train.signals)} signals, {len(names)} features, "
        f"trained on {len(features):,} rows"
    )
    for name in (DEFAULT_DETECTOR, *DETECTORS):
        estimator = make_detector(name).fit(features)
        batch = timed(lambda e=estimator: (e.score_samples(rows), e.contributions(rows)))
        print(report(name, "batch", len(rows), batch))
        single = timed(online(estimator, test, spec, args.online))
        print(report(name, "online", args.online, single))


if __name__ == "__main__":
    main()
