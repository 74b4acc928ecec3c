"""A Sparkplug B host that checks the spec's rules, decoding with pysparkplug, not our code.

Runs in its own virtual environment (.venv-sparkplug, made by bin/test: pysparkplug needs
paho-mqtt 1.x, the project uses 2.x), subscribes to spBv1.0/# on the broker given, and on
SIGTERM writes a JSON report: counts per message kind, decoded DDATA metrics per series, and
every rule broken:
  - NBIRTH has seq 0 and a bdSeq metric; every other message of a node comes after its NBIRTH
  - seq of each later message is the previous one + 1, modulo 256
  - DDATA of a device only after its DBIRTH in the node's session and not after its DDEATH;
    every alias in it is one its DBIRTH declared
  - NDEATH carries the bdSeq of the session it ends (or of an earlier session: stale, ignored)
After a reconnect of this host (a broker restart) a node's state is unknown until its NBIRTH.
Usage: python sparkplug_host.py PORT REPORT_FILE
"""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter

import paho.mqtt.client as paho
from pysparkplug import DBirth, DData, DDeath, NBirth, NDeath, Topic


class Checker:
    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.violations: list[str] = []
        self.seq: dict[str, int] = {}
        self.bd_seq: dict[str, int] = {}
        self.old_bd_seqs: dict[str, set[int]] = {}
        self.births: dict[tuple[str, str], DBirth] = {}
        self.dead: set[tuple[str, str]] = set()
        self.wraps: Counter[str] = Counter()
        self.ddeaths: Counter[str] = Counter()
        self.stale_deaths = 0
        self.metrics: Counter[str] = Counter()
        self.samples: list[list[object]] = []

    def forget(self) -> None:
        """Reconnected: what happened meanwhile is unknown."""
        self.seq.clear()
        self.births.clear()
        self.dead.clear()

    def broken(self, text: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(text)

    def take(self, topic_text: str, raw: bytes) -> None:
        topic = Topic.from_str(topic_text)
        kind = str(topic.message_type)
        node = f"{topic.group_id}/{topic.edge_node_id}"
        device = (node, topic.device_id or "")
        self.kinds[kind] += 1
        if kind in ("NCMD", "DCMD", "STATE"):
            return  # sent to a node, not by it
        if kind == "NBIRTH":
            birth = NBirth.decode(raw)
            bd = [m.value for m in birth.metrics if m.name == "bdSeq"]
            if birth.seq != 0 or not bd:
                self.broken(f"{node}: NBIRTH seq {birth.seq}, bdSeq {bd}")
            if node in self.bd_seq:
                self.old_bd_seqs.setdefault(node, set()).add(self.bd_seq[node])
            self.bd_seq[node] = int(bd[0]) if bd else -1
            self.seq[node] = 0
            self.births = {k: v for k, v in self.births.items() if k[0] != node}
            return
        if kind == "NDEATH":
            death = NDeath.decode(raw)
            if node not in self.bd_seq:
                return  # a session this host never saw begin
            bd_seq = int(death.bd_seq_metric.value)
            if bd_seq == self.bd_seq[node]:
                self.seq.pop(node, None)
            elif bd_seq in self.old_bd_seqs.get(node, set()):
                self.stale_deaths += 1
            else:
                self.broken(f"{node}: NDEATH bdSeq {bd_seq}, session {self.bd_seq[node]}")
            return
        if node not in self.seq:
            if node in self.bd_seq:  # known once, then offline or lost: data must wait for NBIRTH
                self.broken(f"{node}: {kind} outside a session (no NBIRTH since NDEATH)")
            return
        payload_class = {"DBIRTH": DBirth, "DDATA": DData, "DDEATH": DDeath}.get(kind)
        if payload_class is None:
            return
        if kind == "DDATA" and device not in self.births:
            self.broken(f"{device}: DDATA before its DBIRTH")
            return
        payload = payload_class.decode(raw, birth=self.births.get(device))
        expected = (self.seq[node] + 1) % 256
        if payload.seq != expected:
            self.broken(f"{node}: {kind} seq {payload.seq}, expected {expected}")
        if payload.seq == 0:
            self.wraps[node] += 1
        self.seq[node] = payload.seq
        if kind == "DBIRTH":
            self.births[device] = payload
            self.dead.discard(device)
        elif kind == "DDEATH":
            self.dead.add(device)
            self.ddeaths[device[1]] += 1
        else:
            if device in self.dead:
                self.broken(f"{device}: DDATA after DDEATH")
            names = {m.alias: m.name for m in self.births[device].metrics if m.alias}
            for metric in payload.metrics:
                name = metric.name or names.get(metric.alias)
                if name is None:
                    self.broken(f"{device}: alias {metric.alias} not in its DBIRTH")
                    continue
                self.metrics[f"{device[1]}/{name}"] += 1
                self.samples.append([device[1], name, metric.timestamp])

    def report(self) -> dict[str, object]:
        return {
            "kinds": dict(self.kinds),
            "violations": self.violations,
            "wraps": dict(self.wraps),
            "ddeaths": dict(self.ddeaths),
            "stale_deaths": self.stale_deaths,
            "bd_seq": self.bd_seq,
            "samples": self.samples,
        }


def main() -> None:
    port, report_file = int(sys.argv[1]), sys.argv[2]
    checker = Checker()
    client = paho.Client(client_id="sparkplug-checker", clean_session=True)

    def on_connect(c: paho.Client, _u: object, _f: object, rc: int) -> None:
        checker.forget()
        c.subscribe("spBv1.0/#", qos=1)
        print("subscribed", flush=True)

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            checker.take(message.topic, message.payload)
        except Exception as exc:  # a payload pysparkplug cannot decode breaks the rules
            checker.broken(f"{message.topic}: {type(exc).__name__}: {exc}")

    def stop(*_: object) -> None:
        client.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(0.1, 0.5)
    signal.signal(signal.SIGTERM, stop)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_forever(retry_first_connection=True)
    with open(report_file, "w") as out:
        json.dump(checker.report(), out)


if __name__ == "__main__":
    main()
