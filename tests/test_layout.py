"""The layout as the docs describe it (docs/architecture.md), held against the code's imports.

Each package has one job, named in its docstring, and imports only the packages below it: the
simulator and the shared vocabulary (core) depend on nothing of ours; the CLI (shopfloor) wires
everything; throwaway servers (testbed) serve tests and benchmarks only. The measurement names
of the data model are written once, in core.schema.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.schema import MEASUREMENTS

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages of ours it may import
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "plc_sim": set(),
    "testbed": set(),
    "delivery": {"core"},
    "historian": {"core"},
    "uns": {"core"},
    "connectors": {"core", "delivery"},
    "analytics": {"core"},
    "dashboards": {"core"},
    "liveview": {"core"},
    "linelab": {"core", "analytics", "plc_sim"},
    "shopfloor": {
        "core",
        "delivery",
        "historian",
        "uns",
        "connectors",
        "analytics",
        "linelab",
        "liveview",
        "plc_sim",
    },
}
OURS = {*ALLOWED, "tests", "bench"}
# test folders that must not reach the CLI package, directly or through a test helper (the
# connector, historian and broker folders also hold tests that run a CLI command against a
# second stack; those are integration tests of the whole command)
BELOW_THE_CLI = ("core", "delivery", "analytics", "linelab")


def modules(folder: Path) -> Iterator[Path]:
    yield from (p for p in sorted(folder.rglob("*.py")) if "node_modules" not in p.parts)


def imported(path: Path) -> set[str]:
    """Dotted names of the modules of ours that a file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] in OURS}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_packages_below_it(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(ROOT / package)
        for name in imported(path)
        if name.split(".")[0] not in ALLOWED[package] | {package}
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_names_its_one_job(package: str) -> None:
    init = ROOT / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 8, f"{init.relative_to(ROOT)} needs a docstring"


def test_no_product_module_imports_test_support() -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for package in ALLOWED.keys() - {"testbed"}
        for path in modules(ROOT / package)
        for name in imported(path)
        if name.split(".")[0] in {"tests", "testbed", "bench"}
    }
    assert not wrong, sorted(wrong)


def reached(path: Path, seen: set[Path]) -> Iterator[str]:
    """What a test file imports, followed through the test helpers it imports."""
    if path in seen:
        return
    seen.add(path)
    for name in imported(path):
        yield name
        helper = ROOT / Path(*name.split(".")).with_suffix(".py")
        if name.startswith("tests.") and helper.is_file():
            yield from reached(helper, seen)


@pytest.mark.parametrize("folder", BELOW_THE_CLI)
def test_tests_of_a_package_below_the_cli_do_not_import_it(folder: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} reaches {name}"
        for path in modules(ROOT / "tests" / folder)
        for name in reached(path, set())
        if name.split(".")[0] == "shopfloor"
    }
    assert not wrong, sorted(wrong)


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def literal_measurements(path: Path) -> Iterator[str]:
    """Measurement names spelled out: as a Point's or a `points` read's first argument, or
    after FROM in a query."""
    names = "|".join(map(re.escape, MEASUREMENTS))
    from_clause = re.compile(rf'FROM\s+"({names})"')  # InfluxQL; SQLite's tables are its own
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            first = node.args[0]
            if (
                called in {"Point", "points"}
                and isinstance(first, ast.Constant)
                and first.value in MEASUREMENTS
            ):
                yield f"{shown(path)}:{node.lineno} {called}({first.value!r})"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and from_clause.search(node.value)
        ):
            yield f"{shown(path)}:{node.lineno} {node.value!r}"


def test_measurement_names_are_written_once_in_the_schema() -> None:
    spelled = [
        found
        for package in ALLOWED
        for path in modules(ROOT / package)
        if path != ROOT / "core" / "schema.py"
        for found in literal_measurements(path)
    ]
    assert not spelled, spelled


def test_the_measurement_guard_sees_a_spelled_out_name(tmp_path: Path) -> None:
    """The check above can fail: it finds each way a name used to be spelled out."""
    sample = tmp_path / "spelled.py"
    sample.write_text(
        'Point("anomaly", {}, {}, 0)\nhistorian.points("events")\nq = \'SELECT x FROM "kpi"\'\n',
        encoding="utf-8",
    )
    assert len(list(literal_measurements(sample))) == 3
