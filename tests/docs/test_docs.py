"""Every page of the documentation against the code: README.md, docs/*.md and the READMEs next
to the code.

What a reader may copy or follow is checked: local links and their #anchors resolve (and stay in
the repository); every docs page is reachable from README.md; every `shopfloor` command of a
code block parses with the real command line and every option a page names exists; every path
of the repository and every `package.module` a page names exists; YAML blocks parse and the
DataFrame API block runs. Three tables are held to the code: the data model (core.schema), the
commands (the CLI's subcommands) and the packages with what each may import (docs/architecture.md,
checked against every import of every package).
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.schema import MEASUREMENTS
from shopfloor import cli
from tests.docs.pages import (
    DOCS,
    README,
    ROOT,
    all_pages,
    anchors,
    blocks,
    docs_pages,
    inline_code,
    links,
    name,
    text,
)
from tests.test_layout import ALLOWED

PAGES = all_pages()
SHOPFLOOR = {"shopfloor", "bin/shopfloor", "./bin/shopfloor", ".venv/bin/shopfloor"}

# Top-level entries of the repository: a path a page names that starts with one of them must
# exist (others, such as pki/, spool/ or models/, are made at run time).
TOP = [
    *("plc_sim", "core", "connectors", "delivery", "historian", "uns", "analytics", "linelab"),
    *("shopfloor", "testbed", "dashboards", "bench", "tests", "config", "bin", "docs", ".ci"),
    *("compose.yaml", "Dockerfile", "pyproject.toml"),
]
NOT_OURS = {"config/thresholds.json"}  # NAB's (docs/anomaly-detection.md), not this repository's
FILE_SUFFIXES = {"db", "py", "yaml", "yml", "json", "md", "png", "der", "pem", "npz", "txt"}
OUR_PACKAGES = [
    *("plc_sim", "core", "connectors", "delivery", "historian", "uns", "analytics", "linelab"),
    *("shopfloor", "testbed", "dashboards", "tests", "bench"),
]


def page_ids(pages: list[Path]) -> list[str]:
    return [name(p) for p in pages]


@cache
def by_file_name() -> dict[str, list[Path]]:
    """Every file of the repository's own folders (not .venv, node_modules, caches) by name."""
    found: dict[str, list[Path]] = {}
    for top in TOP:
        for path in [ROOT / top, *(ROOT / top).rglob("*")]:
            parts = path.relative_to(ROOT).parts
            if path.is_file() and not any(
                p in ("node_modules", "__pycache__") or (p.startswith(".") and p != ".ci")
                for p in parts
            ):
                found.setdefault(path.name, []).append(path)
    return found


# --- links ---------------------------------------------------------------------------------


def local_links(page: Path) -> Iterator[tuple[str, Path, str]]:
    """(link as written, the file it names, its #anchor or '') of every local link."""
    for target in links(text(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        yield target, (page.parent / path).resolve() if path else page, anchor


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_local_links_resolve(page: Path) -> None:
    broken = []
    for target, path, anchor in local_links(page):
        if not path.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (path.suffix != ".md" or anchor not in anchors(text(path))):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{name(page)}:\n" + "\n".join(broken)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached, todo = {README}, [README]
    while todo:
        for _, path, _ in local_links(todo.pop()):
            if path.suffix == ".md" and path.is_file() and path not in reached:
                reached.add(path)
                if path.parent == DOCS:
                    todo.append(path)
    unreached = [name(p) for p in docs_pages() if p not in reached]
    assert not unreached, f"no way from README.md to {unreached}"


def test_no_page_names_a_folder_outside_the_repository() -> None:
    outside = re.compile(r"(?<![\w.])(\.\./)+(shared|work)\b|/work/")
    found = [f"{name(p)}: {m.group()}" for p in PAGES for m in outside.finditer(text(p))]
    assert not found, found


# --- commands and options ------------------------------------------------------------------


@cache
def parser() -> argparse.ArgumentParser:
    return cli.build_parser()


@cache
def subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def options(command: argparse.ArgumentParser) -> set[str]:
    return {o for action in command._actions for o in action.option_strings}


@cache
def other_options() -> set[str]:
    """Options of `python -m plc_sim` and of the benchmark scripts, as their sources spell them."""
    sources = [*ROOT.glob("plc_sim/*.py"), *ROOT.glob("bench/*.py")]
    return {
        m for path in sources for m in re.findall(r"[\"'](--[a-z][\w-]*)[\"']", path.read_text())
    }


def flags(words: list[str]) -> list[str]:
    """The --options among the words of a command as documented: [optional] brackets and
    =values dropped."""
    found = []
    for word in words:
        word = word.strip("[]")
        if word.startswith("--"):
            found.append(word.split("=", 1)[0])
    return found


def shopfloor_commands() -> Iterator[tuple[str, list[str]]]:
    """(page, argv after `shopfloor`) of every shopfloor command in a page's sh blocks."""
    for page in PAGES:
        for block in blocks(text(page)):
            if block.lang == "sh":
                for argv in block.command_lines():
                    if argv[0] in SHOPFLOOR:
                        yield name(page), [word.strip("[]") for word in argv[1:]]


def test_every_shopfloor_command_in_a_code_block_parses() -> None:
    commands = list(shopfloor_commands())
    assert len(commands) > 20  # the walk found them
    wrong = []
    for page, argv in commands:
        try:
            parser().parse_args(argv)
        except SystemExit:
            wrong.append(f"{page}: shopfloor {' '.join(argv)}")
    assert not wrong, "commands the CLI refuses:\n" + "\n".join(wrong)


def test_bin_scripts_in_code_blocks_exist() -> None:
    named = {
        argv[0].removeprefix("./")
        for page in PAGES
        for block in blocks(text(page))
        if block.lang == "sh"
        for argv in block.command_lines()
        if argv[0].removeprefix("./").startswith("bin/")
    }
    assert {"bin/shopfloor", "bin/test"} <= named
    missing = [script for script in named if not (ROOT / script).is_file()]
    assert not missing


def check_span_options(span: str) -> str | None:
    """What is wrong with the options of an inline command (`shopfloor up --seed N`,
    `detect --from mqtt://`, `bench/bench_soak.py --duration 150s`, `--spool DIR`), or None."""
    words = span.split()
    first = words[0]
    if first in SHOPFLOOR:
        words = words[1:]
        if not words or words[0].startswith("--"):
            return None if set(flags(words)) <= options(parser()) else "not an option"
        if words[0] not in subcommands():
            return f"no command {words[0]!r}"
        first = words[0]
    if first in subcommands():
        unknown = set(flags(words)) - options(subcommands()[first]) - options(parser())
        return f"{first} has no {sorted(unknown)}" if unknown else None
    if first.startswith("--"):
        known = {o for c in subcommands().values() for o in options(c)} | other_options()
        known |= options(parser())
        return None if flags([first])[0] in known else "no command takes it"
    if "/" in first or first.endswith((".py", ".c", ".js")):  # a script of ours
        found = [ROOT / first] if (ROOT / first).is_file() else by_file_name().get(first, [])
        if not found:
            return "no such script"
        source = found[0].read_text()
        unknown = [f for f in flags(words[1:]) if f not in source]
        return f"{first} has no {unknown}" if unknown else None
    return None


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_option_a_page_names_exists(page: Path) -> None:
    wrong = [
        f"`{span}`: {problem}"
        for span in inline_code(text(page))
        if "--" in span and (problem := check_span_options(span))
    ]
    assert not wrong, f"{name(page)}:\n" + "\n".join(wrong)


# --- paths and modules ---------------------------------------------------------------------

PATH = re.compile(r"^[\w.*<>@-]+(/[\w.*<>@-]*)*$")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # uns/SITE/AREA/..., shopfloor/v1/points/MEASUREMENT


def named_paths(page: Path) -> Iterator[tuple[str, list[Path]]]:
    """(span, where it may be) of every inline span that names a file or folder of ours."""
    for span in inline_code(text(page)):
        if not PATH.match(span) or span in NOT_OURS or "..." in span:
            continue
        parts = span.rstrip("/").split("/")
        if any(PLACEHOLDER.match(part) for part in parts):
            continue
        pattern = re.sub(r"<[^>]*>", "*", span.rstrip("/"))
        if len(parts) == 1:
            if span.endswith(".py"):  # a module or script by its file name
                yield span, [page.parent / span, *by_file_name().get(span, [])]
            continue
        bases = [base for base in (page.parent, ROOT) if (base / parts[0]).exists()]
        if parts[0] in TOP and ROOT not in bases:
            bases.append(ROOT)
        if bases:
            yield span, [hit for base in bases for hit in base.glob(pattern)]


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_path_a_page_names_exists(page: Path) -> None:
    missing = [span for span, found in named_paths(page) if not any(p.exists() for p in found)]
    assert not missing, f"{name(page)} names what the repository does not have: {missing}"


def named_modules(page: Path) -> Iterator[str]:
    pattern = re.compile(rf"^(?:{'|'.join(OUR_PACKAGES)})(?:\.[A-Za-z_]\w*)+$")
    for span in inline_code(text(page)):
        if pattern.match(span) and span.rsplit(".", 1)[1] not in FILE_SUFFIXES:
            yield span


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_module_a_page_names_exists(page: Path) -> None:
    missing = [span for span in named_modules(page) if not resolves(span)]
    assert not missing, f"{name(page)} names modules or attributes that are gone: {missing}"


# --- code blocks ---------------------------------------------------------------------------


def test_yaml_blocks_parse() -> None:
    found = [
        (name(page), block.text)
        for page in PAGES
        for block in blocks(text(page))
        if block.lang == "yaml"
    ]
    assert found
    for page, block in found:
        assert yaml.safe_load(block) is not None, page


def plant(rows: int, seed: int, start: int = 0) -> pd.DataFrame:
    """Three signals at 1 Hz following one load, with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + rows)
    load = np.sin(t / 90.0)
    values = load[:, None] * [1.0, -0.5, 2.0] + rng.normal(0, 0.2, (rows, 3))
    index = pd.date_range("2026-01-01", periods=rows, freq="1s", tz="UTC") + pd.Timedelta(
        seconds=start
    )
    return pd.DataFrame(values, index=index, columns=["temp_c", "current_a", "flow_lph"])


def test_the_dataframe_api_block_runs() -> None:
    page = DOCS / "anomaly-detection.md"
    (block,) = [b for b in blocks(text(page)) if b.lang == "python"]
    normal, new = plant(400, 1), plant(200, 2, start=400)
    new.iloc[100:, 1] += 3.0  # a step in one signal
    scope: dict[str, object] = {"normal": normal, "new": new}
    exec(compile(block.text, f"{name(page)} (python block)", "exec"), scope)
    flags, names, scores = scope["flags"], scope["names"], scope["scores"]
    assert len(flags) == len(names) == len(scores) == len(new)  # type: ignore[arg-type]
    assert np.asarray(flags)[150:].mean() > 0.5 and "current_a" in set(names)  # type: ignore[arg-type]


# --- tables held to the code ---------------------------------------------------------------


def table_rows(page_text: str, header: str) -> list[list[str]]:
    """The cells of the rows of the table whose header row starts with `header`."""
    lines = page_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip() for cell in cells])
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_data_model_table_is_core_schema() -> None:
    rows = table_rows(text(DOCS / "data-model.md"), "| measurement | tags | fields |")
    documented = {ticked(row[0])[0]: (ticked(row[1]), ticked(row[2])) for row in rows}
    assert set(documented) == set(MEASUREMENTS)
    for measurement, (tags, fields) in documented.items():
        model = MEASUREMENTS[measurement]
        assert tags == list(model.tags), measurement
        assert set(fields) == set(model.fields), measurement


def test_the_commands_table_lists_every_command() -> None:
    rows = table_rows(text(DOCS / "commands.md"), "| command | what it does |")
    listed = {span.removeprefix("shopfloor ").split()[0] for row in rows for span in ticked(row[0])}
    assert listed == set(subcommands())


def architecture() -> dict[str, set[str]]:
    """package -> the packages of ours it may import, as docs/architecture.md states it."""
    rows = table_rows(text(DOCS / "architecture.md"), "| package | its one job | imports of ours |")
    return {ticked(row[0])[0].rstrip("/"): set(ticked(row[2])) for row in rows}


def test_the_architecture_page_states_the_rule_the_layout_test_enforces() -> None:
    """tests/test_layout.py holds every import of every package against ALLOWED; the page
    must say the same, package by package."""
    assert architecture() == ALLOWED
