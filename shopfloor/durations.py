"""Durations as people type them on a command line: 90, 90s, 10m, 2h, 1d."""

from __future__ import annotations

import argparse
import re

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; an argparse type, so a typo is reported as a usage error."""
    match = _PATTERN.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write a positive number with s, m, h or d (e.g. 30s, 10m)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
