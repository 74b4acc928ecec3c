"""`detect --from mqtt://`: the online detector scores the stream an edge publishes to a real
Mosquitto, decoded by the ingest code, and flags the fault on the right machine.

A model is trained on a fault-free stretch of the simulated line; then an edge publishes (as
Sparkplug B) a quiet stretch followed by a stuck fill-volume sensor on the filler, with the
simulated timestamps, and the detector replays those seconds at full speed (`step(now_s)`)
from what the stream brought, writing its points to a SQLite historian.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.model_store import load_models
from analytics.online import OnlineDetector
from analytics.training import TrainingSettings, train_models
from analytics.windows import read_telemetry
from historian import open_historian
from plc_sim.process import Simulator
from plc_sim.spec import load_line
from testbed.mosquitto import Mosquitto
from tests.analytics.line_recording import MACHINE, SIGNAL, T0, record
from tests.e2e.test_line import running
from tests.eventually import eventually
from uns.broker import open_broker
from uns.publisher import MqttPublisher
from uns.stream import RecentHistorian, open_stream

pytestmark = pytest.mark.mosquitto
WARMUP_S, NORMAL_S, QUIET_S, FAULT_S = 1800, 900, 60, 60
DETECTOR = "detect-test"


async def test_detect_from_mqtt_flags_the_stuck_sensor_on_its_machine(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sim = Simulator(load_line().model_copy(update={"faults": [], "stops": []}), seed=5)
    sim.warm_up(WARMUP_S)
    normal = RecentHistorian(hold_s=10 * NORMAL_S)
    await normal.write_samples(record(sim, NORMAL_S))
    telemetry = await read_telemetry(normal, T0, T0 + NORMAL_S + 1)  # warm_up: clock at 0
    settings = TrainingSettings(min_rows=600, alarm={"k": 3, "n": 5, "hold_off_s": 30.0})
    saved, _ = train_models({MACHINE: telemetry[MACHINE]}, settings, tmp_path / "models")
    assert [m.machine for m in saved] == [MACHINE]
    models = load_models(tmp_path / "models")

    start = round(sim.time_s)
    stretch = record(sim, QUIET_S)
    sim.inject(MACHINE, "stuck_sensor", 1.0, FAULT_S)
    fault_at = T0 + round(sim.time_s)
    stretch += record(sim, FAULT_S)

    async with open_historian(f"sqlite:{tmp_path / 'h.db'}") as store:
        recent, feed = open_stream(mosquitto.url, store, hold_s=600.0, client_id=DETECTOR)
        # The edge waits until the detector's own share group is subscribed (?ingest=).
        edge = MqttPublisher(open_broker(f"{mosquitto.url}?node=edge&ingest={DETECTOR}"))
        async with running(feed):
            for second in range(0, len(stretch), 500):
                await edge.write_samples(stretch[second : second + 500])
            await eventually(lambda: recent.samples_held == len(stretch), "the stream in", 20)
        # Closed only now: its NDEATH would mark every signal bad at the time it arrives, and
        # that time (today) is far after the recording's, which the stream would then drop.
        await edge.close()
        detector = OnlineDetector(recent, models, lag_s=0.0, kpi_interval_s=None)
        for second in range(start + 1, round(sim.time_s) + 1):
            await detector.step(T0 + second)
        events = await store.points("events", tags={"kind": "anomaly"})
        anomaly = await store.points("anomaly", tags={"machine": MACHINE})

    # From the first complete window on, every second is scored, from the stream alone.
    window_s = models[MACHINE].window.window_s
    assert len(anomaly) >= QUIET_S + FAULT_S - window_s - 1
    assert min(p.ts for p in anomaly) < fault_at * 10**9, "the quiet stretch scored too"
    flagged = [p for p in anomaly if p.fields["is_anomaly"]]
    assert flagged and min(p.ts for p in flagged) >= fault_at * 10**9, "no flag before the fault"
    assert {e.tags["machine"] for e in events} == {MACHINE}
    opened = [e for e in events if e.fields["active"]]
    assert opened, "no episode flagged"
    assert fault_at * 10**9 <= opened[0].ts <= (fault_at + 35) * 10**9
    assert opened[0].fields["top_signal"] == SIGNAL
