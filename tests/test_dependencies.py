"""What the run command installs is enough to run every product package.

`bin/shopfloor` installs the project's own dependencies (pyproject's [project.dependencies]),
not the test extras; a product module that imports a package only the extras bring (as
`python -m dashboards.build` once did with grafana-foundation-sdk) dies with a traceback on a
student's machine and passes on every developer's. Each third-party import of a product
package must come from a declared dependency or from one of theirs.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import pytest

from tests.test_layout import ALLOWED, OURS, ROOT, modules

PRODUCT = sorted(set(ALLOWED) - {"testbed"})  # testbed serves tests and benchmarks only


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def installed_by_the_run_command() -> set[str]:
    """The declared dependencies and what they require in turn."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {_name(r) for r in pyproject["project"]["dependencies"]}
    pulled = {_name(r) for dist in declared for r in requires(dist) or () if "extra ==" not in r}
    return declared | pulled


def third_party_imports(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in OURS and t not in sys.stdlib_module_names}


@pytest.mark.parametrize("package", PRODUCT)
def test_every_import_of_a_product_package_is_installed_by_the_run_command(package: str) -> None:
    available = installed_by_the_run_command()
    distributions = packages_distributions()
    missing = {
        f"{path.relative_to(ROOT)} imports {top} ({', '.join(distributions.get(top, ['?']))})"
        for path in modules(ROOT / package)
        for top in third_party_imports(path)
        if not {_name(d) for d in distributions.get(top, [])} & available
    }
    assert not missing, sorted(missing)
