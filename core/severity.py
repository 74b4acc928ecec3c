"""Severity: the one bounded scale on which people read how bad a flag is.

A raw anomaly score means nothing to a reader (one detector's 981,831 is another's 0.7), so
everything a person sees (the CLI, the dashboards, the live view) shows the severity instead:
the score as a multiple of its machine's limit, clipped to [0, SEVERITY_CAP]. 1 is the limit
itself; below 1 is normal. The levels name the bands; their lower bounds are the dashboards'
colour thresholds. PLC alarms (OPC UA severity 1-1000) map onto the same levels.
"""

from __future__ import annotations

import math
from enum import IntEnum

SEVERITY_CAP = 10.0  # "ten times the limit or more": past that, the number adds nothing


class SeverityLevel(IntEnum):
    """The bands of the severity scale, ordered so that max() picks the worst."""

    NORMAL = 0
    LOW = 1
    HIGH = 2
    CRITICAL = 3


# The lowest severity of each level above NORMAL: the dashboards' threshold steps.
LEVEL_FLOORS: dict[SeverityLevel, float] = {
    SeverityLevel.LOW: 1.0,
    SeverityLevel.HIGH: 2.0,
    SeverityLevel.CRITICAL: 5.0,
}

# OPC UA condition severities (1-1000) at which each level starts (Part 9's usual bands).
OPCUA_LEVEL_FLOORS: dict[SeverityLevel, int] = {
    SeverityLevel.LOW: 1,
    SeverityLevel.HIGH: 501,
    SeverityLevel.CRITICAL: 801,
}


def anomaly_severity(score: float, threshold: float) -> float:
    """The score as a multiple of its limit, clipped to [0, SEVERITY_CAP]; NaN stays NaN
    (no score). A non-positive limit has no meaningful multiple: at or below it reads 0,
    above it SEVERITY_CAP."""
    if math.isnan(score) or math.isnan(threshold):
        return math.nan
    if threshold <= 0:
        return SEVERITY_CAP if score > threshold else 0.0
    return min(max(score / threshold, 0.0), SEVERITY_CAP)


def severity_level(severity: float) -> SeverityLevel:
    """The level whose band holds `severity` (NaN reads NORMAL: nothing was flagged)."""
    return _band(severity, LEVEL_FLOORS)


def opcua_severity_level(severity: int) -> SeverityLevel:
    """The level of an OPC UA condition's severity (1-1000; 0 or less is no alarm)."""
    return _band(severity, OPCUA_LEVEL_FLOORS)


def _band(
    value: float, floors: dict[SeverityLevel, float] | dict[SeverityLevel, int]
) -> SeverityLevel:
    """The highest level whose floor `value` reaches (NORMAL below every floor, and for NaN)."""
    reached = [level for level, floor in floors.items() if value >= floor]
    return max(reached, default=SeverityLevel.NORMAL)
