"""The Modbus -> InfluxDB bench of `bench_modbus_influx.py`, run through Node-RED instead.

Run: .venv/bin/python bench/bench_nodered_modbus.py [--seconds 20] [--warmup 5] [--both]
The same workload as `bench_modbus_influx.py` (the libmodbus C server in its `--moving` mode, 12
unit ids x 125 holding registers, FC3 every 2 ms, every register a point, a throwaway influxd),
polled by Node-RED 4.1 with node-red-contrib-modbus and written with node-red-contrib-influxdb
(bench/nodered: the versions pinned in package-lock.json, installed here with `npm ci` when
missing or stale; flow.json, settings.js). The points have our telemetry shape, so the same
`count(quality)` counts both, and the figures are measured the same way (`measure`): stored
samples/s, samples per CPU-second and peak RSS of the node process, load average. After the
window it checks what Node-RED wrote (tags, fields, a row) and compares the points its function
node made with those InfluxDB holds: timestamps of ms precision could merge points of a series.
`--both` runs `shopfloor connect` first, then Node-RED, and prints the ratios; `--client-json`
sets the Modbus-Client node (e.g. `{"bufferCommands": true}`: its queue), `--join N` writes N
answers at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bench_modbus_influx as ours
from bench_modbus_influx import (
    Window,
    influx_query,
    measure,
    print_ratios,
    servers,
    stored_between,
    wait_storing,
)
from measure import machine_description
from processes import HOST, child, free_port, run_main

NODE_RED = Path(__file__).parent / "nodered"
RED_JS = NODE_RED / "node_modules" / "node-red" / "red.js"


@dataclass(frozen=True, slots=True)
class Check:
    """What Node-RED wrote, as InfluxDB shows it after the run."""

    made: int
    same_ms: int
    stored: int
    tags: dict[str, int]
    fields: dict[str, str]
    row: dict[str, object]


def install() -> None:
    """`npm ci` into bench/nodered when node_modules is missing or older than the lock file."""
    installed = NODE_RED / "node_modules" / ".package-lock.json"
    lock = NODE_RED / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    print("Installing Node-RED and its Modbus and InfluxDB nodes into bench/nodered (npm ci) ...")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_RED,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def points_made(port: int) -> tuple[int, int, int]:
    """Points the flow's function node has made so far, those of them stamped in the same ms as
    their unit's previous answer, and Node-RED's clock then (ms)."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/points", timeout=10) as resp:
        doc = json.load(resp)
    return int(doc["points"]), int(doc["same_ms"]), int(doc["now_ms"])


def check(url: str, port: int) -> Check:
    """Tags, fields and a row of what Node-RED wrote; points made against points stored up to
    the same instant (InfluxDB keeps one point per series and timestamp: a shortfall is merged
    or lost points)."""
    made, same_ms, now_ms = points_made(port)
    time.sleep(ours.CATCH_UP_S)
    stored = stored_between(url, 0, (now_ms + 1) * 10**6)
    tags = {
        key: len(series["values"])
        for key in ("site", "line", "machine", "signal")
        for series in influx_query(url, f'SHOW TAG VALUES FROM telemetry WITH KEY = "{key}"')
    }
    fields = {
        str(name): str(kind)
        for series in influx_query(url, "SHOW FIELD KEYS FROM telemetry")
        for name, kind in series["values"]
    }
    # a point older than the writes still in flight: InfluxDB 1.x may show a point being written
    # with some of its fields only
    newest = f"machine = 'unit07' AND time <= {now_ms}ms ORDER BY time DESC LIMIT 1"
    last = influx_query(url, f"SELECT * FROM telemetry WHERE {newest}")
    row = dict(zip(last[0]["columns"], last[0]["values"][0], strict=True))
    return Check(made, same_ms, stored, tags, fields, row)


QUEUE_SETTINGS = ("bufferCommands", "parallelUnitIdsAllowed", "commandDelay", "clientTimeout")


def flow_file(folder: Path, client: dict[str, object], join: int) -> tuple[Path, dict[str, object]]:
    """bench/nodered/flow.json with `client` set on its Modbus-Client config node and, if `join`
    > 1, a join node that gathers that many answers into one write (a Node-RED user's way to
    write larger batches, as ours does); and the queue settings the Modbus-Client then has."""
    nodes = json.loads((NODE_RED / "flow.json").read_text())
    (config,) = [node for node in nodes if node["type"] == "modbus-client"]
    config.update(client)
    if join > 1:
        (points,) = [node for node in nodes if node["id"] == "bench.points"]
        points["wires"] = [["bench.join"]]
        nodes += [
            {
                "id": "bench.join",
                "type": "join",
                "z": points["z"],
                "mode": "custom",
                "build": "array",
                "property": "payload",
                "propertyType": "msg",
                "count": str(join),
                "timeout": "1",
                "accumulate": False,
                "wires": [["bench.flat"]],
            },
            {
                "id": "bench.flat",
                "type": "function",
                "z": points["z"],
                "func": "msg.payload = msg.payload.flat();\nreturn msg;\n",
                "outputs": 1,
                "wires": [["bench.write"]],
            },
        ]
    path = folder / "flow.json"
    path.write_text(json.dumps(nodes, indent=1))
    return path, {key: config[key] for key in QUEUE_SETTINGS}


def run(
    seconds: float, warmup_s: float, client: dict[str, object], join: int = 1
) -> tuple[Window, Check, dict[str, object]]:
    """One run of Node-RED's flow against the C server into a fresh influxd, measured; with the
    Modbus-Client's queue settings."""
    with servers("bench-nodered-") as bench:
        influx = bench.influx
        ui_port = free_port()
        influx_query(influx.url, "CREATE DATABASE bench", method="POST")
        flow, settings = flow_file(bench.folder, client, join)
        env = {
            **os.environ,
            "NODE_RED_PORT": str(ui_port),
            "NODE_RED_USER_DIR": str(bench.folder),
            "NODE_RED_FLOW_FILE": str(flow),
            "MODBUS_PORT": str(bench.port),
            "INFLUX_PORT": str(urllib.parse.urlsplit(influx.url).port),
        }
        argv = ["node", str(RED_JS), "--settings", str(NODE_RED / "settings.js")]
        with child(argv, env) as process:
            wait_storing(influx.url, process)
            window = measure(
                influx.url, process.pid, influx.pid, bench.server.pid, warmup_s, seconds
            )
            return window, check(influx.url, ui_port), settings


def versions() -> str:
    """The installed versions of node, Node-RED and its two node packages."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    packages = ("node-red", "node-red-contrib-modbus", "node-red-contrib-influxdb")
    found = [f"{name} {_version(name)}" for name in packages]
    return f"node {node}, " + ", ".join(found)


def _version(package: str) -> str:
    manifest = NODE_RED / "node_modules" / package / "package.json"
    return str(json.loads(manifest.read_text())["version"])


def print_check(result: Check) -> None:
    lost = result.made - result.stored
    print(
        f"  check         {result.made:,} points made by the flow, {result.stored:,} stored "
        f"({lost:+,} not stored, {lost / result.made:.3%}); {result.same_ms:,} stamped in the "
        "same ms as their unit's previous answer"
    )
    print(f"  check         tag values {result.tags}, fields {result.fields}")
    print(f"  check         newest row of unit07: {result.row}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--both", action="store_true", help="run shopfloor connect first")
    parser.add_argument(
        "--client-json",
        default="{}",
        help='settings of the Modbus-Client node, e.g. {"bufferCommands": true} (its queue)',
    )
    parser.add_argument(
        "--join", type=int, default=1, help="answers per InfluxDB write (a join node), e.g. 40"
    )
    args = parser.parse_args()
    if shutil.which("cc") is None or shutil.which("npm") is None:
        print("needs cc, libmodbus-dev and node: apt-get install gcc libmodbus-dev pkg-config npm")
        return 2
    install()
    print(machine_description())
    if args.both:
        mine = ours.run(args.seconds, args.warmup, {}, {})
        print(ours.describe(mine, args.warmup, {}, {}))
        mine.print("connector")
        reference = ours.run_reference(args.seconds, args.warmup)
        print(ours.describe_reference(reference, args.warmup))
        reference.print("C client")
    client = json.loads(args.client_json)
    window, result, settings = run(args.seconds, args.warmup, client, args.join)
    print(
        f"Node-RED ({versions()}), {ours.UNITS} units x {ours.REGISTERS} FC3, "
        f"rate 2 ms, InfluxDB 1.x, {window.wall_s:.0f} s after {args.warmup:g} s warm-up, "
        f"Modbus-Client {settings}, {args.join * ours.REGISTERS} points per write"
    )
    window.print("node-red")
    print_check(result)
    if args.both:
        print_ratios("shopfloor connect", mine, reference, "C reference")
        print_ratios("Node-RED", window, reference, "C reference")
        print_ratios("shopfloor connect", mine, window, "Node-RED")
    return 0


if __name__ == "__main__":
    run_main(main)
