"""Debian's headless chromium, driven by playwright: what a person would see of a page.

playwright is told to run the system binary, so it never downloads a browser of its own (the
machines' network is closed); the flags keep chromium from calling home at every start.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_FLAGS = (
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_binary() -> str:
    """The path of Debian's chromium; a missing one says how to get it."""
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium not found: bin/test installs it (apt-get install chromium)")
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium for the duration of the block (start it once per test module or
    session: a start costs about a second)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_binary(), args=list(CHROMIUM_FLAGS)
        )
        try:
            yield browser
        finally:
            browser.close()
