"""An independent Sparkplug B edge node of another vendor, built with pysparkplug, not our code.

Runs in its own virtual environment (.venv-sparkplug, made by bin/test: pysparkplug needs
paho-mqtt 1.x). Group PlantB, node Line7, devices Filler and Capper. It publishes, at QoS 0 as
Sparkplug requires: NBIRTH (bdSeq 0); DBIRTH of Filler with one metric of every datatype the
data model stores (and Bytes, which it refuses), at T0, engUnit properties on three of them;
DBIRTH of Capper; one DDATA of Filler by alias (no datatypes, as Sparkplug allows) at T0 + 1 s;
DDEATH of Capper; then, when a line arrives on stdin, NDEATH and a disconnect. The payloads are
pysparkplug's; the engUnit properties, which pysparkplug has no API for, are set on its own
protobuf classes (the Tahu schema). Prints "published" after the DDEATH.
With COUNT, it publishes COUNT more DDATA of Filler's Motor/Temperature (value i at
T0 + 2 s + 10 ms * i) before the DDEATH.
Usage: python sparkplug_edge.py PORT T0_MS [COUNT]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import paho.mqtt.client as paho
from pysparkplug import DataType, DBirth, DData, DDeath, Metric, NBirth, NDeath
from pysparkplug import _protobuf as tahu

GROUP, NODE = "PlantB", "Line7"
UNITS = {"Motor/Temperature": "°C", "Motor/Speed": "rpm", "Pressure": "psi"}
STARTED = datetime(2026, 12, 7, 21, 0, 0, 125000, tzinfo=UTC)

# name: (datatype, value in the DBIRTH, value in the DDATA)
FILLER: dict[str, tuple[DataType, object, object]] = {
    "Motor/Temperature": (DataType.DOUBLE, 71.5, 72.25),
    "Motor/Speed": (DataType.FLOAT, 1450.5, 1500.25),
    "Pressure": (DataType.FLOAT, 30.5, 31.0),
    "Count": (DataType.INT32, 1001, -6),
    "Small": (DataType.INT8, -6, 127),
    "Short": (DataType.INT16, -300, 300),
    "Total": (DataType.INT64, -5_000_000_000, 2**40),
    "UByte": (DataType.UINT8, 250, 1),
    "UShort": (DataType.UINT16, 65535, 2),
    "UInt": (DataType.UINT32, 4_000_000_000, 3),
    "ULong": (DataType.UINT64, 2**53, 4),
    "Running": (DataType.BOOLEAN, True, False),
    "Batch/Id": (DataType.STRING, "B-2026-001", 'B-17 "quoted"'),
    "Operator": (DataType.TEXT, "Jürgen", "Ana"),
    "Lot": (DataType.UUID, "0d3c2f4e-8a1b-4c5d-9e6f-7a8b9c0d1e2f", "x"),
    "Started": (DataType.DATETIME, STARTED, STARTED),
    "Profile": (DataType.FLOAT_ARRAY, (1.5, 2.5, 3.5), (4.5, 5.5, 6.5)),
    "Flags": (DataType.BOOLEAN_ARRAY, (True, False, True), (False, True, False)),
    "Names": (DataType.STRING_ARRAY, ("a", "b"), ("c", "d")),
    "Blob": (DataType.BYTES, b"\x00\x01", b"\x02"),
    "Nothing": (DataType.DOUBLE, 1.0, None),
}


def topic(kind: str, device: str = "") -> str:
    return "/".join(("spBv1.0", GROUP, kind, NODE, *((device,) if device else ())))


def with_units(raw: bytes) -> bytes:
    """The payload with an engUnit property on the metrics of UNITS (Tahu's protobuf)."""
    payload = tahu.Payload.FromString(raw)
    for metric in payload.metrics:
        if metric.name in UNITS:
            metric.properties.keys.append("engUnit")
            unit = metric.properties.values.add()
            unit.type = DataType.STRING
            unit.string_value = UNITS[metric.name]
    return payload.SerializeToString()


def main() -> None:
    port, t0 = int(sys.argv[1]), int(sys.argv[2])
    aliases = {name: n for n, name in enumerate(FILLER, start=100)}
    bd_seq = Metric(timestamp=t0, name="bdSeq", datatype=DataType.INT64, value=0)
    client = paho.Client(client_id="plantb-line7", clean_session=True)
    client.will_set(topic("NDEATH"), NDeath(t0, bd_seq).encode(), qos=1)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()

    def send(kind: str, payload: bytes, device: str = "") -> None:
        client.publish(topic(kind, device), payload, qos=0).wait_for_publish(5)

    send("NBIRTH", NBirth(t0, 0, (bd_seq,)).encode())
    filler = tuple(
        Metric(timestamp=t0, name=name, datatype=kind, value=first, alias=aliases[name])
        for name, (kind, first, _) in FILLER.items()
    )
    send("DBIRTH", with_units(DBirth(t0, 1, filler).encode()), "Filler")
    count = Metric(timestamp=t0, name="Count", datatype=DataType.INT32, value=7, alias=1)
    send("DBIRTH", DBirth(t0, 2, (count,)).encode(), "Capper")
    data = tuple(
        Metric(
            timestamp=t0 + 1000,
            name=None,
            datatype=kind,
            value=second,
            alias=aliases[name],
            is_null=second is None,
        )
        for name, (kind, _, second) in FILLER.items()
    )
    send("DDATA", DData(t0 + 1000, 3, data).encode(), "Filler")  # no datatypes: the birth's
    seq = 4
    for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 0):
        ts = t0 + 2000 + 10 * i
        metric = Metric(
            ts, None, DataType.DOUBLE, value=float(i), alias=aliases["Motor/Temperature"]
        )
        send("DDATA", DData(ts, seq, (metric,)).encode(), "Filler")
        seq = (seq + 1) % 256
    send("DDEATH", DDeath(t0 + 2000, seq).encode(), "Capper")
    print("published", flush=True)
    sys.stdin.readline()
    send("NDEATH", NDeath(int(time.time() * 1000), bd_seq).encode())
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
