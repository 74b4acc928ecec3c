"""File paths in a connectors file are relative to the file's folder, not the working directory.

An integrator keeps a connectors file next to its pki/ folder and password files and then runs
it from anywhere (a service unit, a container, `shopfloor check` from another folder): resolving
against the file keeps the three together. The shared loader passes the file's folder as
validation context; a model built without it (from command-line options) keeps paths relative to
the working directory, where the user typed them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

_CONFIG_DIR = "config_dir"


def _resolve(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    folder = (info.context or {}).get(_CONFIG_DIR)
    if folder is None or path.is_absolute():
        return path
    return folder / path


ConfigPath = Annotated[Path, AfterValidator(_resolve)]
"""A file or folder named in a connectors file: `~` expanded, relative to the file's folder."""


def context_for(config_file: Path) -> dict[str, Any]:
    """The validation context that makes ConfigPath fields relative to `config_file`'s folder."""
    return {_CONFIG_DIR: config_file.parent}
