"""Soak: a steady sample rate through the durable spool into InfluxDB, for a long time.

Run: .venv/bin/python bench/bench_soak.py [--duration 30m] [--rate 5000]
Starts its own throwaway influxd. A producer hands over batches of 50 samples stamped with the
current time (as a Modbus poll does) to a HistorianWriter with a spool folder; every sample's
end-to-end latency (source timestamp to the historian's acknowledgement) goes into a 1 ms
histogram. Prints a line every 10 s and at the end: samples/s, spool depth, RSS now and peak,
p50/p99/max latency.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from measure import machine_description
from processes import run_main

from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import Historian, Quality, Sample
from historian.influx_v1 import InfluxV1Historian
from shopfloor.durations import parse_duration
from testbed.influxd import Influxd

BATCH = 50
SIGNALS = 100
MAX_LATENCY_MS = 120_000
REPORT_S = 10.0


class LatencyHistogram:
    """Milliseconds from source timestamp to acknowledgement, counted per 1 ms bin."""

    def __init__(self) -> None:
        self.counts = np.zeros(MAX_LATENCY_MS + 1, dtype=np.int64)

    def add(self, samples: Sequence[Sample], now_ns: int) -> None:
        stamps = np.fromiter((s.source_ts for s in samples), dtype=np.int64, count=len(samples))
        ms = np.minimum((now_ns - stamps) // 1_000_000, MAX_LATENCY_MS)
        self.counts += np.bincount(ms, minlength=MAX_LATENCY_MS + 1)

    def percentile(self, q: float) -> int:
        cumulative = np.cumsum(self.counts)
        return int(np.searchsorted(cumulative, q / 100 * cumulative[-1]))

    def max(self) -> int:
        return int(np.flatnonzero(self.counts)[-1]) if self.counts.any() else 0


class AckTimed(InfluxV1Historian):
    """InfluxDB 1.x that notes when each sample was acknowledged."""

    histogram = LatencyHistogram()

    async def write_samples(self, samples: Sequence[Sample]) -> None:
        await super().write_samples(samples)
        self.histogram.add(samples, time.time_ns())


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def produce(writer: HistorianWriter, rate: float, duration_s: float) -> int:
    """Batches of BATCH samples at `rate` samples/s, paced against the loop clock."""
    loop = asyncio.get_running_loop()
    start, sent, n = loop.time(), 0, 0
    while (elapsed := loop.time() - start) < duration_s:
        due = int(elapsed * rate)
        while sent + BATCH <= due:
            now = time.time_ns()
            await writer.put(
                [
                    Sample(
                        "soak",
                        f"m{n % 10}",
                        f"s{(sent + i) % SIGNALS}",
                        float(i),
                        Quality.GOOD,
                        now + i,
                    )
                    for i in range(BATCH)
                ]
            )
            sent += BATCH
            n += 1
        await asyncio.sleep(0.01)
    return sent


async def soak(url: str, folder: Path, rate: float, duration_s: float) -> None:
    historian: Historian = AckTimed(url, "soak")
    writer = HistorianWriter(historian, spool=Spool(folder / "spool"))
    histogram = AckTimed.histogram
    async with historian:
        task = asyncio.create_task(writer.run())
        producer = asyncio.create_task(produce(writer, rate, duration_s))
        started, last = time.monotonic(), 0
        while not producer.done():
            await asyncio.wait([producer], timeout=REPORT_S)
            written = writer.stats.samples_written
            now_rss, peak = rss_mib()
            print(
                f"{time.monotonic() - started:7.0f} s  {(written - last) / REPORT_S:8,.0f} "
                f"samples/s  spool {writer.stats.spool.bytes / 1e6:6.1f} MB "
                f"({writer.stats.pending} samples)  RSS {now_rss:6.1f} MiB (peak {peak:6.1f})  "
                f"p50 {histogram.percentile(50)} ms  p99 {histogram.percentile(99)} ms",
                flush=True,
            )
            last = written
        sent = producer.result()
        task.cancel()  # the writer delivers what it holds, then stops
        await asyncio.gather(task, return_exceptions=True)
        wall = time.monotonic() - started
    now_rss, peak = rss_mib()
    print(
        f"\n{machine_description()}\n"
        f"{sent:,} samples in {wall:.0f} s: {writer.stats.samples_written / wall:,.0f} samples/s "
        f"stored ({writer.stats.spool.dropped_samples} dropped, {writer.stats.rejected} rejected)\n"
        f"RSS final {now_rss:.1f} MiB, peak {peak:.1f} MiB\n"
        f"latency source -> historian ack: p50 {histogram.percentile(50)} ms, "
        f"p99 {histogram.percentile(99)} ms, max {histogram.max()} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=parse_duration, default=1800.0, help="default 30m")
    parser.add_argument("--rate", type=float, default=5000.0, help="samples/s (default 5000)")
    args = parser.parse_args()
    with Influxd() as server, tempfile.TemporaryDirectory(prefix="soak-") as folder:
        asyncio.run(soak(server.url, Path(folder), args.rate, args.duration))
    return 0


if __name__ == "__main__":
    run_main(main)
