"""Versions of a machine's model on disk: each save a new immutable file, an active pointer that
a rollback moves and a running detector follows, and the layout before versions still loading."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from analytics.detectors import make_detector
from analytics.learning import learn_false_alarm
from analytics.model_store import (
    ActiveVersions,
    ModelError,
    load_models,
    model_for,
    rollback,
    save_model,
    save_version,
    versions,
)
from tests.analytics.test_model_store import _model, _rows


def test_each_save_is_a_new_version_and_rollback_moves_the_pointer(tmp_path: Path) -> None:
    model = _model(make_detector("pca"))
    first = save_version(tmp_path, model, "trained")
    second = save_version(tmp_path, replace(model, threshold=9.0), "learnt", labels=("a:b@c",))
    assert (first.lineage.version, second.lineage.version) == (1, 2)
    assert (second.lineage.parent, second.lineage.labels) == (1, ("a:b@c",))
    assert model_for(tmp_path, "conveyor").threshold == 9.0  # type: ignore[union-attr]
    v1_bytes = (tmp_path / "conveyor" / "v1.npz").read_bytes()

    assert rollback(tmp_path, "conveyor").version == 1  # the parent of v2
    again = load_models(tmp_path)["conveyor"]  # as a restarted process finds it
    assert (again.lineage.name, again.threshold) == ("v1", 2.5)
    assert [(v.name, v.reason, v.parent) for v in versions(tmp_path, "conveyor")] == [
        ("v1", "trained", None),
        ("v2", "learnt", 1),
    ]
    assert (tmp_path / "conveyor" / "v1.npz").read_bytes() == v1_bytes  # never rewritten
    assert rollback(tmp_path, "conveyor", to=2).version == 2  # a rollback can be undone
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "conveyor").iterdir()}
    assert modes == {"active": 0o600, "v1.npz": 0o600, "v2.npz": 0o600}  # plant data
    assert sorted(p.name for p in (tmp_path / "conveyor").iterdir()) == [
        "active",
        "v1.npz",
        "v2.npz",
    ]


def test_the_layout_before_versions_loads_and_migrates_on_the_next_save(tmp_path: Path) -> None:
    model = _model(make_detector("pca"))
    save_model(tmp_path / "conveyor.npz", model)
    assert load_models(tmp_path)["conveyor"].lineage.name == "v0"
    assert [v.name for v in versions(tmp_path, "conveyor")] == ["v0"]

    save_version(tmp_path, replace(model, threshold=7.0), "learnt")
    assert not (tmp_path / "conveyor.npz").exists()
    listed = versions(tmp_path, "conveyor")
    assert [(v.name, v.reason, v.parent) for v in listed] == [
        ("v1", "trained", None),
        ("v2", "learnt", 1),
    ]
    assert rollback(tmp_path, "conveyor").version == 1
    assert model_for(tmp_path, "conveyor").threshold == 2.5  # type: ignore[union-attr]


def test_a_running_detector_sees_a_changed_active_version(tmp_path: Path) -> None:
    model = _model(make_detector("pca"))
    save_version(tmp_path, model, "trained")
    save_version(tmp_path, replace(model, threshold=4.0), "learnt")
    watch = ActiveVersions(tmp_path, load_models(tmp_path))
    assert watch.changed() == []
    rollback(tmp_path, "conveyor", to=1)
    (changed,) = watch.changed()
    assert (changed.lineage.name, changed.threshold) == ("v1", 2.5)
    assert watch.changed() == []


def test_unknown_machine_or_version_and_a_damaged_version_are_clear_errors(
    tmp_path: Path,
) -> None:
    model = _model(make_detector("pca"))
    save_version(tmp_path, model, "trained")
    with pytest.raises(ModelError, match=r"no model of machine 'capper' .*machines: conveyor"):
        rollback(tmp_path, "capper")
    with pytest.raises(ModelError, match=r"conveyor has no model version v7 \(has: v1\)"):
        rollback(tmp_path, "conveyor", to=7)
    with pytest.raises(ModelError, match="no earlier version"):
        rollback(tmp_path, "conveyor")
    save_version(tmp_path, model, "trained")
    damaged = tmp_path / "conveyor" / "v1.npz"
    os.truncate(damaged, damaged.stat().st_size // 2)
    with pytest.raises(ModelError, match=r"v1\.npz"):
        rollback(tmp_path, "conveyor", to=1)
    assert model_for(tmp_path, "conveyor").lineage.name == "v2"  # type: ignore[union-attr]


def test_a_learnt_pattern_is_saved_with_its_version_and_only_it_is_capped(tmp_path: Path) -> None:
    fitted = _model(make_detector("pca"))
    model = replace(fitted, threshold=float(-fitted.estimator.offset_), normal_rows=_rows(3000, 0))
    pattern = _rows(200, 3)
    pattern[:, 0] += 40.0  # one feature far out: the false alarm
    other = _rows(200, 4)
    other[:, 5] += 40.0  # another feature far out: a real fault
    assert (model.score(pattern)[0] > model.threshold).all()

    learnt = learn_false_alarm(model, pattern[:100], "anomaly:conveyor@x")
    save_version(tmp_path, learnt, "learnt", labels=learnt.lineage.labels)
    loaded = load_models(tmp_path)["conveyor"]
    assert loaded.lineage.labels == ("anomaly:conveyor@x",)
    assert (loaded.score(pattern[100:])[0] < loaded.threshold).all()  # seen again
    np.testing.assert_array_equal(loaded.score(other)[0], model.score(other)[0])
