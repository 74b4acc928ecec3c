"""Dashboards drawn as Grafana draws them: the page in tests/dashboards/render (Grafana 11.6's
own @grafana/data and @grafana/ui from npm, bundled by esbuild) loads one dashboard model in
headless chromium, asks this module for every query's InfluxDB answer, and reports what it drew.

The bundle is built once per lockfile and source (cached under render/build/, gitignored); bin/test
runs `npm ci` there when the lockfile changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser

RENDER = Path(__file__).parent / "render"
ESBUILD = RENDER / "node_modules" / ".bin" / "esbuild"
SOURCES = (RENDER / "package-lock.json", RENDER / "src" / "page.js", RENDER / "src" / "page.html")
WIDTH = 1600
# A target's InfluxDB answer, for the page's request: {panel, refId, query, interval, scoped}.
Answer = Callable[[Mapping[str, Any]], dict[str, Any]]


def bundle() -> Path:
    """The page, bundled; rebuilt only when the lockfile or the page's source changed."""
    if not ESBUILD.exists():
        raise RuntimeError(f"{ESBUILD} is missing: run `npm ci` in {RENDER} (bin/test does it)")
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in SOURCES)).hexdigest()[:16]
    folder = RENDER / "build" / digest
    page = folder / "page.html"
    if page.exists():
        return page
    shutil.rmtree(RENDER / "build", ignore_errors=True)
    folder.mkdir(parents=True)
    subprocess.run(
        [
            str(ESBUILD),
            str(RENDER / "src" / "page.js"),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--minify",
            "--log-level=warning",
            "--loader:.ttf=empty",  # monaco's icon font: never drawn here
            '--define:process.env.NODE_ENV="production"',
            "--define:global=globalThis",
            f"--outfile={folder / 'page.bundle.js'}",
        ],
        check=True,
        timeout=300,
    )
    shutil.copy(RENDER / "src" / "page.html", page)
    return page


@dataclass
class Drawn:
    """What the page drew of one dashboard: per panel its frames after Grafana's
    transformations and overrides, the values a stat shows, and any text cut off."""

    panels: list[dict[str, Any]]
    clipped: list[dict[str, Any]]
    errors: list[str]
    colors: dict[str, str]  # Grafana's colour for each name asked for
    # The InfluxDB answers the page was given, per panel title, in the order it asked.
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def panel(self, title: str) -> dict[str, Any]:
        found = [p for p in self.panels if p["title"] == title]
        assert len(found) == 1, f"{len(found)} panels titled {title!r}"
        return found[0]


def draw(
    browser: Browser,
    model: Mapping[str, Any],
    window_ms: tuple[int, int],
    variables: Mapping[str, Sequence[str]],
    answer: Answer,
    screenshot: Path,
    colors: Sequence[str] = (),
) -> Drawn:
    """Draw `model` for the time range `window_ms` at WIDTH px in one page load, with the
    InfluxDB results `answer` gives; a JPEG screenshot goes to `screenshot`; `colors` are named
    colours to resolve with Grafana's theme."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    errors: list[str] = []
    answers: dict[str, list[dict[str, Any]]] = {}
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.expose_function("influxQuery", lambda request: _kept(answers, request, answer))
        page.goto(bundle().as_uri())
        report = page.evaluate(
            "([model, from, to, vars, colors]) =>"
            " window.renderDashboard(model, from, to, vars, colors)",
            [model, window_ms[0], window_ms[1], dict(variables), list(colors)],
        )
        page.set_viewport_size({"width": WIDTH, "height": int(report["height"]) + 8})
        page.wait_for_timeout(300)
        clipped = page.evaluate("() => window.clippedTexts()")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True, type="jpeg", quality=80)
    finally:
        page.close()
    errors += [f"{p['title']}: {p['error']}" for p in report["panels"] if p.get("error")]
    return Drawn(report["panels"], clipped, errors, report["colors"], answers)


def _kept(
    answers: dict[str, list[dict[str, Any]]], request: Mapping[str, Any], answer: Answer
) -> dict[str, Any]:
    result = answer(request)
    answers.setdefault(request["panel"], []).append(result)
    return result


def dumps(drawn: Drawn) -> str:
    """The report as JSON, for a look when a test fails."""
    return json.dumps({"panels": drawn.panels, "clipped": drawn.clipped}, indent=1)
