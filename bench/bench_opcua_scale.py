"""OPC UA at plant scale: `shopfloor connect` against node-opcua, N doubles changing every second.

Run: .venv/bin/python bench/bench_opcua_scale.py [--items 5000,20000] [--seconds 30] [--warmup 15]
    [--trees new=.,old=../main]
For each N and each source tree (`--trees`: the connector runs from that checkout, so an old
and a new version are measured side by side in one run, under the same load): a node-opcua
server (tests/second_stack/node_opcua/scale_server.js, its default
limits: 10 subscriptions per session, 1,000 notifications per publish) whose N doubles all
change at every whole second, stamped with that second; a throwaway influxd (InfluxDB 1.x); and
the real `shopfloor connect` as a child process with its spool on, one OPC UA connector for the
N tags, with the connector's defaults (`--opcua-json` adds settings, e.g.
'{"sampling_interval_ms": 0}' for a version whose default samples instead of asking node-opcua
for report by exception: sampled at 250 ms, node-opcua's timers for 20,000 items take a whole
core and the server, not the connector, is measured). After the warm-up, over `--seconds`:

- delivered / changes: the points InfluxDB holds for the seconds of the window, against N per
  second (InfluxDB keeps one point per series and timestamp, so a change stored twice counts
  once and a change missed is missing);
- notifications per CPU-second and share of a core: the connector process's utime + stime;
- peak RSS (VmHWM) of the connector process, and its RSS at the end;
- source-to-stored latency: InfluxDB is asked every 0.25 s how many points each second holds,
  during the window and after it until no more come; a point first counted at time t has a
  latency of at most t - its source second (p50, p99);
- the share of a core the node-opcua and influxd processes used (on a 2-core machine they
  compete with the connector).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_memory import read_status
from measure import child_cpu_seconds, machine_description
from processes import child, free_port, run_main, shopfloor_connect, wait_listening

from testbed.influxd import Influxd

SERVER_SCRIPT = (
    Path(__file__).parents[1] / "tests" / "second_stack" / "node_opcua" / "scale_server.js"
)
POLL_S = 0.25
SETTLED_S = 5.0  # after the window, counting ends once no point came for this long
CATCH_UP_S = 60.0  # or after this
SERVER_START_S = 120.0
SIGNALS_PER_MACHINE = 100
MIB = 2**20


def connectors_file(folder: Path, port: int, items: int, extra: dict[str, object]) -> Path:
    """One OPC UA connector with a tag per server variable (JSON is valid YAML)."""
    tags = [
        {
            "machine": f"m{i // SIGNALS_PER_MACHINE:03d}",
            "signal": f"v{i % SIGNALS_PER_MACHINE:02d}",
            "node": f"ns=1;s=v{i}",
        }
        for i in range(items)
    ]
    entry = {
        "type": "opcua",
        "name": "scale",
        "endpoint": f"opc.tcp://127.0.0.1:{port}/plc",
        "security": "none",
        "tags": tags,
        **extra,
    }
    path = folder / f"connectors-{items}.yaml"
    path.write_text(json.dumps({"site": "bench", "line": "bench", "connectors": [entry]}))
    return path


def server_argv(port: int, items: int, limits: dict[str, str]) -> list[str]:
    """The node-opcua server's command line; its settings go in through the environment."""
    settings = {"PORT": str(port), "ITEMS": str(items), **limits}
    return ["env", *(f"{k}={v}" for k, v in settings.items()), "node", str(SERVER_SCRIPT)]


def counts_per_second(url: str, database: str, first_s: int, end_s: int) -> dict[int, int]:
    """Points per source second in [first_s, end_s)."""
    query = (
        f"SELECT count(quality) FROM telemetry WHERE time >= {first_s}s AND time < {end_s}s "
        "GROUP BY time(1s)"
    )
    params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "s"})
    try:
        with urllib.request.urlopen(f"{url}/query?{params}", timeout=30) as resp:
            doc = json.load(resp)
    except TimeoutError:  # influxd busy taking a backlog: nothing new counted this time
        return {}
    series = doc["results"][0].get("series") or [{"values": []}]
    return {int(ts): int(count or 0) for ts, count in series[0]["values"]}


@dataclass
class Latencies:
    """When each second's points were first counted: a histogram of upper bounds. Only the
    seconds not yet complete are counted again (a count over all of them, 4 times a second,
    kept influxd busy enough to slow down the writes it measures)."""

    items: int
    seen: dict[int, int]
    arrivals: list[tuple[float, int]]  # (latency bound in s, points)

    def follow(
        self, url: str, database: str, first_s: int, end_s: int, until_s: float, settled_s: float
    ) -> None:
        """Count the points of [first_s, end_s) every POLL_S until `until_s` (epoch s), or
        until no new point came for `settled_s`."""
        last_new = time.time()
        while time.time() < until_s and time.time() - last_new < settled_s:
            start_s = next(
                (s for s in range(first_s, end_s) if self.seen.get(s, 0) < self.items), end_s
            )
            stop_s = min(end_s, int(time.time()) + 1)
            if start_s >= stop_s:
                time.sleep(POLL_S)
                continue
            for second, count in counts_per_second(url, database, start_s, stop_s).items():
                new = count - self.seen.get(second, 0)
                if new > 0:
                    self.arrivals.append((time.time() - second, new))
                    self.seen[second] = count
                    last_new = time.time()
            time.sleep(POLL_S)

    def percentile(self, share: float) -> float:
        total = sum(points for _, points in self.arrivals)
        running = 0
        for latency, points in sorted(self.arrivals):
            running += points
            if running >= share * total:
                return latency
        return float("nan")


@dataclass(frozen=True)
class Result:
    items: int
    seconds: int
    delivered: int
    short_seconds: int
    cpu_s: float
    wall_s: float
    server_share: float
    influx_share: float
    peak_rss: int
    end_rss: int
    p50_s: float
    p99_s: float
    load: tuple[float, float, float]


@contextlib.contextmanager
def bench_stack(
    folder: Path, items: int, tree: Path, args: argparse.Namespace
) -> Iterator[tuple[subprocess.Popen[bytes], Influxd, subprocess.Popen[bytes], str]]:
    """node-opcua, influxd and the connector of `tree`, warmed up: (server, influxd,
    connector, database)."""
    port = free_port()
    limits = json.loads(args.server_json)
    with child(server_argv(port, items, limits)) as server, Influxd() as influx:
        wait_listening(server, port, SERVER_START_S)  # node builds N variables first
        config = connectors_file(folder, port, items, json.loads(args.opcua_json))
        database = f"bench{items}"
        http = urllib.parse.urlsplit(influx.url).netloc
        spool = folder / f"spool-{items}-{tree.name}"
        argv = shopfloor_connect(config, f"influxdb://{http}/{database}", spool)
        with child(argv, {**os.environ, "PYTHONPATH": str(tree)}) as connector:
            time.sleep(args.warmup)
            yield server, influx, connector, database


def rss_each_second(pid: int, seconds: float) -> list[float]:
    """The RSS of `pid` in MiB, once a second for `seconds`."""
    samples = []
    for _ in range(int(seconds)):
        time.sleep(1)
        samples.append((read_status(pid) or (0, 0))[0] / MIB)
    return samples


def run_outage(folder: Path, items: int, tree: Path, args: argparse.Namespace) -> None:
    """InfluxDB stopped for --outage-s: the connector's RSS each second before (10 s), during,
    and after while the spool drains (30 s), and the share of the changes from 10 s before
    to 10 s after the outage that InfluxDB holds in the end."""
    with bench_stack(folder, items, tree, args) as (_, influx, connector, database):
        first_s = int(time.time()) + 1
        before = rss_each_second(connector.pid, 10)
        influx.halt()
        during = rss_each_second(connector.pid, args.outage_s)
        influx.resume()
        end_s = int(time.time()) + 10
        after = rss_each_second(connector.pid, 30)
        print(f"N = {items:,} doubles, InfluxDB stopped for {args.outage_s:g} s")
        report_rss(before, during, after)
        latencies = Latencies(items, {}, [])
        latencies.follow(
            influx.url, database, first_s, end_s, time.time() + CATCH_UP_S, settled_s=SETTLED_S
        )
    changes = items * (end_s - first_s)
    delivered = sum(latencies.seen.values())
    print(
        f"  delivered     {delivered:,} / {changes:,} ({delivered / changes:.2%}) of the "
        f"changes from 10 s before to 10 s after"
    )
    print(f"  load average  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def report_rss(before: list[float], during: list[float], after: list[float]) -> None:
    print(f"  RSS before    {min(before):.0f}-{max(before):.0f} MiB")
    print(
        f"  RSS during    {during[0]:.0f} MiB at the start, {max(during):.0f} MiB at most, "
        f"{during[-1]:.0f} MiB at the end"
    )
    print(f"  RSS after     {max(after):.0f} MiB at most while the spool drains", flush=True)


def run_one(folder: Path, items: int, tree: Path, args: argparse.Namespace) -> Result:
    with bench_stack(folder, items, tree, args) as (server, influx, connector, database):
        first_s = int(time.time()) + 1
        end_s = first_s + int(args.seconds)
        latencies = Latencies(items, {}, [])
        time.sleep(first_s - time.time())
        cpu0, wall0 = child_cpu_seconds(connector.pid), time.monotonic()
        server0, influx0 = child_cpu_seconds(server.pid), child_cpu_seconds(influx.pid)
        latencies.follow(influx.url, database, first_s, end_s, end_s, settled_s=math.inf)
        cpu, wall = child_cpu_seconds(connector.pid) - cpu0, time.monotonic() - wall0
        server_cpu = child_cpu_seconds(server.pid) - server0
        influx_cpu = child_cpu_seconds(influx.pid) - influx0
        latencies.follow(
            influx.url, database, first_s, end_s, end_s + CATCH_UP_S, settled_s=SETTLED_S
        )
        end_rss, peak_rss = read_status(connector.pid) or (0, 0)
        load = os.getloadavg()
    return Result(
        items=items,
        seconds=end_s - first_s,
        delivered=sum(latencies.seen.values()),
        short_seconds=sum(1 for s in range(first_s, end_s) if latencies.seen.get(s, 0) < items),
        cpu_s=cpu,
        wall_s=wall,
        server_share=server_cpu / wall,
        influx_share=influx_cpu / wall,
        peak_rss=peak_rss,
        end_rss=end_rss,
        p50_s=latencies.percentile(0.50),
        p99_s=latencies.percentile(0.99),
        load=load,
    )


def report(result: Result) -> None:
    changes = result.items * result.seconds
    print(f"N = {result.items:,} doubles, 1 Hz, {result.seconds} s measured")
    print(
        f"  delivered     {result.delivered:,} / {changes:,} changes "
        f"({result.delivered / changes:.2%}; {result.short_seconds} seconds incomplete)"
    )
    print(
        f"  connector     {result.delivered / result.cpu_s:,.0f} notifications per CPU-second, "
        f"{result.cpu_s / result.wall_s:.0%} of a core"
    )
    print(
        f"  connector     peak RSS {result.peak_rss / MIB:.0f} MiB, "
        f"at the end {result.end_rss / MIB:.0f} MiB"
    )
    print(
        f"  others        node-opcua {result.server_share:.0%} of a core, "
        f"influxd {result.influx_share:.0%}"
    )
    print(f"  latency       source -> stored p50 {result.p50_s:.2f} s, p99 {result.p99_s:.2f} s")
    print(f"  load average  {' '.join(f'{x:.2f}' for x in result.load)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="5000,20000", help="N, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per N")
    parser.add_argument("--warmup", type=float, default=15.0, help="before measuring, per N")
    parser.add_argument(
        "--server-json",
        default="{}",
        help='server limits as JSON, e.g. {"MAX_SUBSCRIPTIONS_PER_SESSION": "20"}',
    )
    parser.add_argument(
        "--opcua-json", default="{}", help="extra connector settings as JSON, e.g. sessions"
    )
    parser.add_argument(
        "--outage-s",
        type=float,
        default=0.0,
        help="instead of the window: stop InfluxDB this long and follow the connector's RSS",
    )
    parser.add_argument(
        "--trees",
        default=f"this={Path(__file__).parents[1]}",
        help="name=checkout,...: run the connector of each (e.g. new=.,old=../main)",
    )
    args = parser.parse_args(argv)
    print(machine_description())
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-opcua-scale-") as tmp:
        for items in (int(n) for n in args.items.split(",")):
            for name, tree in (pair.split("=", 1) for pair in args.trees.split(",")):
                print(f"[{name}: {Path(tree).resolve()}]")
                if args.outage_s:
                    run_outage(Path(tmp), items, Path(tree).resolve(), args)
                else:
                    report(run_one(Path(tmp), items, Path(tree).resolve(), args))
    return 0


if __name__ == "__main__":
    run_main(main)
