"""Secrets come from the environment or from files it names, never from a URL, an argument or a
log line: the one rule every part that logs in (historians, brokers) follows."""

from __future__ import annotations

from collections.abc import Mapping

from core.storage import HistorianError


def secret(environ: Mapping[str, str], name: str) -> str:
    """A secret from NAME, or from the file that NAME_FILE points at (Docker/systemd secrets)."""
    path = environ.get(f"{name}_FILE", "")
    if not path:
        return environ.get(name, "")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip()
    except OSError as exc:
        raise HistorianError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None
