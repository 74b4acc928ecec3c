"""`shopfloor models` and `shopfloor rollback`: versions listed with the active one marked, a
rollback that the next process sees, and one clear line for an unknown machine or version."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from analytics.detectors import make_detector
from analytics.model_store import save_version
from shopfloor import cli
from tests.analytics.test_model_store import _model


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def listed(folder: Path) -> list[dict[str, object]]:
    code, out = run("models", "--models", str(folder), "--json")
    assert code == 0, out
    return json.loads(out)


def test_versions_are_listed_and_a_rollback_stays(tmp_path: Path) -> None:
    model = _model(make_detector("pca"))
    save_version(tmp_path, model, "trained")
    save_version(
        tmp_path, replace(model, threshold=3.0), "learnt from false alarm x", labels=("x",)
    )
    rows = listed(tmp_path)
    assert [(r["version"], r["active"], r["parent"], r["labels_learnt"]) for r in rows] == [
        ("v1", False, None, 0),
        ("v2", True, "v1", 1),
    ]
    assert rows[1]["reason"] == "learnt from false alarm x"

    code, out = run("rollback", "conveyor", "--models", str(tmp_path))
    assert code == 0 and "conveyor: model v1 is active (was v2)" in out
    assert [r["active"] for r in listed(tmp_path)] == [True, False]  # a new process sees it
    code, out = run("models", "--models", str(tmp_path))
    assert code == 0 and out.splitlines()[0].split()[:3] == ["MACHINE", "VERSION", "ACTIVE"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollback", "capper"], "no model of machine 'capper' in {folder} (machines: conveyor)"),
        (["rollback", "conveyor", "--to", "v9"], "conveyor has no model version v9 (has: v1)"),
        (["rollback", "conveyor"], "conveyor: v1 has no earlier version to roll back to"),
        (["models", "capper"], "no model of machine 'capper' in {folder} (machines: conveyor)"),
    ],
)
def test_an_unknown_machine_or_version_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    save_version(tmp_path, _model(make_detector("pca")), "trained")
    assert cli.main([*argv, "--models", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"shopfloor {argv[0]}: error: {message.format(folder=tmp_path)}\n"


def test_a_version_that_is_not_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["rollback", "conveyor", "--to", "latest"])
    assert stopped.value.code == 2
    assert "'latest' is not a version like v3" in capsys.readouterr().err
