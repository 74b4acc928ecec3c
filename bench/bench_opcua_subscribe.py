"""The OPC UA path alone: one `OpcUaInput` against node-opcua, no spool and no historian.

Run: .venv/bin/python bench/bench_opcua_subscribe.py [--items 20000] [--seconds 40]
    [--trees new=.,old=../main] [--opcua-json '{"sampling_interval_ms": 0}']
For each source tree (the input runs in a child process from that checkout, so an old and a new
version are measured one after the other under the same load): a node-opcua server
(tests/second_stack/node_opcua/scale_server.js) whose N doubles all change at every whole
second, stamped with it, and the input with the connector's defaults for `--seconds`. Printed:
per whole second (the first 5 and the last 3 left out: start-up and stop), how many of the N
changes arrived; the lag from the source second to arrival (p50, p99); the input's CPU share.
`bench_opcua_scale.py` measures the same through `shopfloor connect` into InfluxDB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from measure import machine_description
from processes import run_main

SIGNALS_PER_MACHINE = 100


async def measure(items: int, seconds: float, extra: dict[str, object]) -> None:
    """In the child: run the input and print what arrived."""
    from connectors.opcua import Config, build  # of the tree on PYTHONPATH
    from core.sample import Sample
    from tests.second_stack import node_opcua_scale_server

    with tempfile.TemporaryDirectory() as tmp, node_opcua_scale_server(Path(tmp), items) as server:
        tags = [
            {
                "machine": f"m{i // SIGNALS_PER_MACHINE}",
                "signal": f"v{i % 100}",
                "node": f"ns=1;s=v{i}",
            }
            for i in range(items)
        ]
        entry = {"type": "opcua", "name": "bench", "endpoint": server.endpoint}
        config = Config.model_validate({**entry, "security": "none", "tags": tags, **extra})
        source = build(config, site="bench", line="bench")
        per_second: Counter[int] = Counter()
        lags: list[float] = []

        async def emit(batch: Sequence[Sample]) -> None:
            now = time.time()
            for sample in batch:
                second = sample.source_ts // 10**9
                per_second[second] += 1
                lags.append(now - second)

        cpu0 = time.process_time()
        task = asyncio.create_task(source.run(emit))
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    counts = [per_second[s] for s in sorted(per_second)[5:-3]]
    lags.sort()
    print(f"  per second    {counts}")
    print(f"  complete      {sum(c >= items for c in counts)} of {len(counts)} seconds")
    print(
        f"  lag           p50 {lags[len(lags) // 2]:.2f} s, p99 {lags[int(len(lags) * 0.99)]:.2f} s"
    )
    print(f"  input         {cpu / seconds:.0%} of a core (server start and all)")
    print(f"  load average  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--opcua-json", default="{}", help="extra connector settings as JSON")
    parser.add_argument("--trees", default=f"this={Path(__file__).parents[1]}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(measure(args.items, args.seconds, json.loads(args.opcua_json)))
        return 0
    print(machine_description())
    for name, tree in (pair.split("=", 1) for pair in args.trees.split(",")):
        print(f"[{name}: {Path(tree).resolve()}] N = {args.items:,}, {args.opcua_json}")
        given = list(sys.argv[1:] if argv is None else argv)
        child = [sys.executable, __file__, "--child", *given]
        env = {
            **os.environ,
            "PYTHONPATH": f"{Path(tree).resolve()}{os.pathsep}{Path(__file__).parent}",
        }
        subprocess.run(child, env=env, check=True, timeout=args.seconds + 180)
    return 0


if __name__ == "__main__":
    run_main(main)
