"""Durations and times as people type them on a command line: 90, 90s, 10m, 2h, 1d;
2025-01-31T08:00."""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime

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


def parse_time(text: str) -> float:
    """Epoch seconds from an ISO date-time (UTC unless it says otherwise) or a duration ago."""
    try:
        return time.time() - parse_duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2025-01-31T08:00) nor a duration ago (2h, 30m)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
