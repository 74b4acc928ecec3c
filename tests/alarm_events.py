"""PLC alarm events as a connector writes them (connectors/opcua/alarms.py), on a timeline
that holds every case a reader of alarms must get right: raised, acknowledged while active,
cleared and acknowledged, raised again, raised two days ago and unchanged since, one on another
line with a same-named machine, and one that clears only after the moment it is read at.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.sample import Point
from core.schema import EVENTS, EventKind
from core.severity import opcua_severity_level

NS = 10**9
SITE, LINE = "plant", "L1"


@dataclass(frozen=True)
class AlarmEvent:
    """One event of a condition as the PLC reported it, `at` seconds from the drawing time."""

    at: int
    machine: str
    condition: str
    active: bool
    acked: bool
    severity: int
    line: str = LINE
    comment: str = ""

    @property
    def message(self) -> str:
        return f"{self.machine} {self.condition}"

    @property
    def condition_id(self) -> str:
        return f"ns=2;s={self.line}.{self.machine}.{self.condition}"

    def point(self, now: int) -> Point:
        tags = {"site": SITE, "line": self.line, "machine": self.machine, "kind": EventKind.ALARM}
        fields: dict[str, float | int | bool | str] = {
            "text": self.message,
            "active": self.active,
            "acked": self.acked,
            "confirmed": False,
            "retain": self.active or not self.acked,
            "source": self.machine,
            "condition": self.condition,
            "condition_id": self.condition_id,
            "alarm_severity": self.severity,
            "severity_level": int(opcua_severity_level(self.severity)),
            "event_id": f"{self.at + 10**6:x}",
            "comment": self.comment,
        }
        return Point(EVENTS.name, tags, fields, (now + self.at) * NS)


TIMELINE = (
    # raised, acknowledged while active: active, acked, since its raise
    AlarmEvent(-600, "conveyor", "Overcurrent", True, False, 850),
    AlarmEvent(-500, "conveyor", "Overcurrent", True, True, 850, comment="belt cleared"),
    # raised, cleared, acknowledged: over
    AlarmEvent(-900, "conveyor", "HighTemperature", True, False, 700),
    AlarmEvent(-800, "conveyor", "HighTemperature", False, False, 700),
    AlarmEvent(-700, "conveyor", "HighTemperature", False, True, 700, comment="ok"),
    # raised and not acknowledged; it clears only after the end of the range
    AlarmEvent(-300, "air_compressor", "LowPressure", True, False, 600),
    AlarmEvent(60, "air_compressor", "LowPressure", False, False, 600),
    # raised, cleared, raised again: active since the second raise
    AlarmEvent(-1500, "pasteurizer", "LowHoldingTemperature", True, False, 900),
    AlarmEvent(-1400, "pasteurizer", "LowHoldingTemperature", False, False, 900),
    AlarmEvent(-200, "pasteurizer", "LowHoldingTemperature", True, False, 900),
    # raised two days ago, long before the time range, and unchanged since
    AlarmEvent(-2 * 86400, "filler", "LowBottleSupply", True, False, 100),
    # another line's machine of the same name
    AlarmEvent(-400, "conveyor", "Overcurrent", True, False, 850, line="L2"),
)


def active_at(line: str | None = LINE, machine: str = "") -> list[AlarmEvent]:
    """The newest event up to the reading time (at 0) of each condition of `line` (None: every
    line) and `machine` (if given) whose newest event is active: the truth."""
    newest: dict[str, AlarmEvent] = {}
    for event in sorted(TIMELINE, key=lambda e: e.at):
        if event.at <= 0 and line in (None, event.line) and machine in ("", event.machine):
            newest[event.condition_id] = event
    return [e for e in newest.values() if e.active]


def raised(alarm: AlarmEvent) -> int:
    """When the alarm's condition was raised last up to the reading time: its newest active,
    unacknowledged event."""
    return max(
        e.at
        for e in TIMELINE
        if e.condition_id == alarm.condition_id and e.at <= 0 and e.active and not e.acked
    )
