"""The severity scale: bounded, monotone, and the same bands for anomalies and PLC alarms."""

from __future__ import annotations

import math

import pytest

from core.severity import (
    SEVERITY_CAP,
    SeverityLevel,
    anomaly_severity,
    opcua_severity_level,
    severity_level,
)


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [
        (981_831.22, 2.0, SEVERITY_CAP),  # a runaway score reads as "ten times or more"
        (3.0, 2.0, 1.5),
        (-4.0, 2.0, 0.0),
        (2.0, 0.0, SEVERITY_CAP),
        (-1.0, 0.0, 0.0),
    ],
)
def test_severity_is_the_clipped_multiple_of_the_limit(
    score: float, threshold: float, expected: float
) -> None:
    assert anomaly_severity(score, threshold) == expected


def test_no_score_has_no_severity() -> None:
    assert math.isnan(anomaly_severity(math.nan, 1.0))
    assert severity_level(math.nan) is SeverityLevel.NORMAL


@pytest.mark.parametrize(
    ("severity", "level"),
    [(0.99, "NORMAL"), (1.0, "LOW"), (2.0, "HIGH"), (4.9, "HIGH"), (5.0, "CRITICAL")],
)
def test_levels_start_at_their_floor(severity: float, level: str) -> None:
    assert severity_level(severity) is SeverityLevel[level]


@pytest.mark.parametrize(
    ("severity", "level"),
    [(0, "NORMAL"), (1, "LOW"), (500, "LOW"), (501, "HIGH"), (801, "CRITICAL"), (1000, "CRITICAL")],
)
def test_plc_alarm_severities_map_onto_the_same_levels(severity: int, level: str) -> None:
    assert opcua_severity_level(severity) is SeverityLevel[level]
