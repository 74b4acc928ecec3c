"""The simulated-line campaign trains exactly as `shopfloor train` does."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.features import window_features
from analytics.training import TrainingSettings, fit_machine_model
from analytics.windows import MachineTelemetry
from linelab import campaign
from plc_sim.scenarios import labelled_run
from plc_sim.spec import load_line


def test_eval_trains_exactly_as_shopfloor_train_does() -> None:
    """One training path: eval's model of a machine is the model `train` fits from the same
    samples read back from a historian (same signals, threshold and scores), and eval's
    defaults are train's."""
    assert campaign.EvalSettings().training == TrainingSettings()
    line = load_line()
    run = labelled_run(line, seed=3, duration_s=1200, settle_s=600)
    settings = TrainingSettings(min_rows=300)
    models, skipped = campaign.train([run], settings)
    assert not skipped and set(models) == set(line.machines)
    trace = run.machines["conveyor"]
    telemetry = MachineTelemetry("demo", "line1", "conveyor")
    for i, signal in enumerate(trace.signals):
        telemetry.times_s += run.times.tolist()
        telemetry.signals += [signal] * len(run.times)
        telemetry.values += trace.values[:, i].tolist()
    trained = fit_machine_model(telemetry, settings)
    evaluated = models["conveyor"]
    assert (trained.signals, trained.detector, trained.alarm, trained.window) == (
        evaluated.signals,
        evaluated.detector,
        evaluated.alarm,
        evaluated.window,
    )
    assert trained.threshold == pytest.approx(evaluated.threshold, rel=1e-12)
    rows = window_features(
        campaign.machine_frame(run, "conveyor", trained.signals), trained.window
    )[1]
    np.testing.assert_allclose(
        trained.estimator.score_samples(rows), evaluated.estimator.score_samples(rows), rtol=1e-12
    )
