"""Historian benchmark: line-protocol formatting, InfluxDB 1.x ingest, SQLite ingest.

Run: .venv/bin/python bench/bench_historian.py [--samples N]
Starts its own throwaway influxd (InfluxDB 1.x, from PATH). Rates are given per second of wall
time and per CPU-second of this process (influxd's own CPU is not counted), so a number from a
2-core laptop can be compared with one from a bigger machine.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from influxdb_client import Point as ClientPoint
from influxdb_client import WritePrecision
from measure import Elapsed, Stopwatch, machine_description, timed
from processes import run_main

from historian import Historian, Quality, Sample
from historian.influx_v1 import BATCH_SIZE, InfluxV1Historian
from historian.lineprotocol import format_samples
from historian.sqlite import SQLiteHistorian
from testbed.influxd import Influxd

SERIES_MACHINES = 20
SERIES_SIGNALS = 50


def influxd_version() -> str:
    influxd = subprocess.run(
        ["influxd", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return influxd or "influxd ?"


def make_samples(n: int) -> list[Sample]:
    """n samples over 1,000 series, one second apart per series, ending now."""
    series = SERIES_MACHINES * SERIES_SIGNALS
    start = time.time_ns() - (n // series + 1) * 1_000_000_000
    return [
        Sample(
            "line1",
            f"machine_{i % SERIES_MACHINES}",
            f"signal_{i % SERIES_SIGNALS}_c",
            20.0 + (i % 997) * 0.125,
            Quality.GOOD,
            start + (i // series) * 1_000_000_000 + i % series,
            site="plant",
        )
        for i in range(n)
    ]


def client_point_lines(samples: Sequence[Sample]) -> str:
    """The same samples through influxdb-client's Point, as its users would write them."""
    return "\n".join(
        ClientPoint("telemetry")
        .tag("site", s.site)
        .tag("line", s.line)
        .tag("machine", s.machine)
        .tag("signal", s.signal)
        .field("value", s.value)
        .field("quality", int(s.quality))
        .time(s.source_ts, WritePrecision.NS)
        .to_line_protocol()
        for s in samples
    )


def bench_formatting(samples: list[Sample]) -> None:
    few = samples[:50_000]
    format_samples(few)  # warm the series cache, as a running writer has it
    ours = min(timed(lambda: format_samples(samples)).wall_s for _ in range(3))
    theirs = timed(lambda: client_point_lines(few)).wall_s
    ours_rate, theirs_rate = len(samples) / ours, len(few) / theirs
    print(f"line protocol, ours:                 {ours_rate:>12,.0f} samples/s")
    print(f"line protocol, influxdb-client Point: {theirs_rate:>11,.0f} samples/s")
    print(f"  ours is {ours_rate / theirs_rate:.1f}x faster per sample")


async def write_all(store: Historian, samples: list[Sample]) -> None:
    for start in range(0, len(samples), BATCH_SIZE):
        await store.write_samples(samples[start : start + BATCH_SIZE])


def bench_store(name: str, open_store: Callable[[], Historian], samples: list[Sample]) -> None:
    async def run() -> Elapsed:
        async with open_store() as store:
            await store.write_samples(samples[:10])  # connect / create outside the timing
            watch = Stopwatch()
            await write_all(store, samples)
            return watch.elapsed()

    elapsed = asyncio.run(run())
    n = len(samples)
    print(f"{name:<37}{elapsed.rates(n)} ({n:,} samples, {elapsed.core_share:.0%} of a core)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500_000, help="samples per store test")
    args = parser.parse_args(argv)
    print(machine_description())
    print(influxd_version())
    samples = make_samples(args.samples)
    bench_formatting(samples)
    with Influxd() as server:
        bench_store(
            "InfluxDB 1.x, 5,000-sample batches:",
            lambda: InfluxV1Historian(server.url, "bench"),
            samples,
        )
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        bench_store("SQLite (WAL), 5,000-sample batches:", lambda: SQLiteHistorian(db), samples)
    return 0


if __name__ == "__main__":
    run_main(main)
