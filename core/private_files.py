"""Plant data files are for their owner only: files 0600, folders 0700, whatever the umask.

The one place that says so, for the spool, the SQLite historian and the Sparkplug births file.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def create_private(path: str | Path) -> None:
    """Create `path` empty and 0600 if it does not exist yet (an existing file is left as it
    is), so that a library that then opens it (SQLite) keeps that mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def replace_private(path: Path, text: str) -> None:
    """Replace `path` with `text` through a 0600 temporary file renamed over it (readers see
    the old content or the new, never half)."""
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(part, FILE_MODE)  # an old .part file keeps its mode through O_TRUNC
    os.replace(part, path)
