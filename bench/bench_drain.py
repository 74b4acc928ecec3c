"""Drain rate: how fast a spool filled during a historian outage is replayed into InfluxDB.

Run: .venv/bin/python bench/bench_drain.py [--samples 1000000]
Fills a spool folder with connector-sized batches (50 samples) while no historian runs, as an
outage leaves it, then starts a throwaway influxd and a HistorianWriter on that folder and times
the replay until the spool is empty. Also prints the fill rate (put + group-commit fsync).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from measure import Stopwatch, machine_description
from processes import run_main

from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import Quality, Sample
from historian.influx_v1 import InfluxV1Historian
from testbed.influxd import Influxd

BATCH = 50
T0 = 1_700_000_000_000_000_000


def batch(n: int) -> list[Sample]:
    return [
        Sample("drain", f"m{n % 20}", f"s{i}", float(n), Quality.GOOD, T0 + n * 10_000_000)
        for i in range(BATCH)
    ]


async def fill(folder: Path, samples: int) -> None:
    spool = Spool(folder)
    await spool.open()
    committer = asyncio.create_task(spool.run())
    watch = Stopwatch()
    for start in range(0, samples // BATCH, 200):  # 200 connectors' batches in flight at once
        await asyncio.gather(*(spool.put(batch(n)) for n in range(start, start + 200)))
    elapsed = watch.elapsed()
    committer.cancel()
    await asyncio.gather(committer, return_exceptions=True)
    await spool.close()
    print(f"fill : {samples:,} samples, {spool.stats.bytes / 1e6:.1f} MB: {elapsed.rates(samples)}")


async def drain(folder: Path, url: str, samples: int) -> None:
    async with InfluxV1Historian(url, "drain") as historian:
        # Stopped at once, the writer delivers everything it can read before it returns.
        writer = HistorianWriter(historian, spool=Spool(folder), drain_timeout_s=3600)
        await writer.open()
        watch = Stopwatch()
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        elapsed = watch.elapsed()
    print(f"drain: {writer.stats.samples_written:,} samples replayed: {elapsed.rates(samples)}")
    print(f"       ({elapsed.core_share:.0%} of a core in this process; influxd not counted)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    samples = args.samples // (BATCH * 200) * BATCH * 200
    print(machine_description())
    with tempfile.TemporaryDirectory(prefix="drain-") as tmp:
        folder = Path(tmp) / "spool"
        asyncio.run(fill(folder, samples))
        with Influxd() as server:
            asyncio.run(drain(folder, server.url, samples))
    return 0


if __name__ == "__main__":
    run_main(main)
