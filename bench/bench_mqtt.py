"""Scale-out through a broker: edge -> Mosquitto -> N ingest workers -> InfluxDB, N = 1, 2, 3.

Run: .venv/bin/python bench/bench_mqtt.py [--samples 100000] [--workers 1,2,3]
An edge (this process: a spooled HistorianWriter on an MqttPublisher, Sparkplug B only) hands
over batches of 1,000 samples (100 machines x 10 signals, one timestamp each) as fast as it is
let; N `shopfloor ingest` processes share one subscription and write to a throwaway influxd.
The rate is end to end: from the first put until InfluxDB counts every sample. CPU per sample
is given for each stage: the edge (this process), mosquitto, the N workers together, influxd.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from measure import Stopwatch, child_cpu_seconds, machine_description
from processes import child, free_port, run_main, venv_command

from delivery.spool import Spool
from delivery.writer import HistorianWriter
from historian import Quality, Sample
from testbed.influxd import Influxd
from testbed.mosquitto import Mosquitto
from uns.broker import open_broker
from uns.publisher import MqttPublisher

MACHINES, SIGNALS = 100, 10
BATCH = MACHINES * SIGNALS
T0 = 1_700_000_000_000_000_000
GROUP = "bench"


def batch(n: int) -> list[Sample]:
    ts = T0 + n * 1_000_000  # 1 ms apart: Sparkplug timestamps are milliseconds
    return [
        Sample("bench", f"m{m}", f"s{s}_c", float(n), Quality.GOOD, ts)
        for m in range(MACHINES)
        for s in range(SIGNALS)
    ]


def influx_query(url: str, statement: str, database: str = "") -> dict:
    data = urllib.parse.urlencode({"q": statement, "db": database}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as resp:
        return json.loads(resp.read())


def stored(url: str, database: str) -> int:
    result = influx_query(url, "SELECT count(quality) FROM telemetry", database)
    series = result["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def wait_connected(health_port: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health", timeout=2) as r:
                if json.loads(r.read())["connectors"][0]["connected"]:
                    return
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"ingest worker on health port {health_port} did not connect")


async def publish(broker_url: str, folder: Path, samples: int) -> None:
    publisher = MqttPublisher(open_broker(f"{broker_url}?group={GROUP}&node=edge&format=sparkplug"))
    # Stopped after the last put, the writer delivers everything before it returns.
    writer = HistorianWriter(
        publisher, spool=Spool(folder), flush_interval_s=0.05, drain_timeout_s=600
    )
    await writer.open()
    task = asyncio.create_task(writer.run())
    for n in range(samples // BATCH):
        await writer.put(batch(n))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await publisher.close()


def run(workers: int, samples: int, influxd: Influxd, broker: Mosquitto, tmp: Path) -> None:
    database = f"mqtt{workers}"
    influx_query(influxd.url, f'CREATE DATABASE "{database}"')
    historian = influxd.url.replace("http://", "influxdb://") + f"/{database}"
    with ExitStack() as stack:
        procs = []
        for i in range(workers):
            port = free_port()
            command = [venv_command("shopfloor"), "ingest", "--from"]
            command += [f"{broker.url}?group={GROUP}&share=n{workers}", "--client-id"]
            command += [f"n{workers}-w{i}", "--historian", historian, "--health-port", str(port)]
            command += ["--spool", str(tmp / f"n{workers}-w{i}")]
            procs.append(stack.enter_context(child(command)))
            wait_connected(port)
        pids = {"mosquitto": [broker.pid], "ingest": [p.pid for p in procs]}
        pids["influxd"] = [influxd.pid]
        before = {stage: sum(map(child_cpu_seconds, p)) for stage, p in pids.items()}
        watch = Stopwatch()
        asyncio.run(publish(broker.url, tmp / f"edge-{workers}", samples))
        edge_cpu = watch.elapsed().cpu_s
        while stored(influxd.url, database) < samples:
            time.sleep(0.1)
        elapsed = watch.elapsed()
        cpu = {stage: sum(map(child_cpu_seconds, p)) - before[stage] for stage, p in pids.items()}
    cpu = {"edge": edge_cpu, **cpu}
    per_sample = ", ".join(f"{stage} {1e6 * s / samples:.1f}" for stage, s in cpu.items())
    print(
        f"N={workers}: {samples:,} samples in {elapsed.wall_s:.1f} s: "
        f"{samples / elapsed.wall_s:>8,.0f} samples/s end to end; "
        f"CPU us/sample: {per_sample}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,3")
    args = parser.parse_args()
    samples = args.samples // BATCH * BATCH
    print(machine_description())
    with (
        tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp,
        Influxd() as influxd,
        Mosquitto() as broker,
    ):
        for workers in (int(n) for n in args.workers.split(",")):
            run(workers, samples, influxd, broker, Path(tmp))
    return 0


if __name__ == "__main__":
    run_main(main)
