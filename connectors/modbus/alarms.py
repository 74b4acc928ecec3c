"""Modbus alarm bits and words into the `events` measurement (kind `alarm`), as OPC UA's.

Modbus has no alarm model: a configured alarm is a coil or discrete input, one bit of a
register, or a register compared with a value or a mask, read in the same requests as the tags
(connectors/modbus/plan.py). Each change of its state is one event: `active` true when it goes
active, false when it clears. After every (re)connect the first read of each alarm sends it
again if it is active (the Modbus stand-in for OPC UA's ConditionRefresh), so that the active
set is right after an outage: within one run as the same point (time and event id of its
activation), which overwrites; after a start, stamped with that first read. A read that fails
changes no state (a bad answer is not a cleared alarm): it is counted in `read_errors` and
logged once until the alarm reads again. Modbus has no acknowledgement or confirmation: an
alarm is never acknowledged or confirmed (`acked` and `confirmed` false, `comment` empty; `retain`
while active), which is what an OPC UA alarm nobody acknowledged says, so the dashboards and the
view read both alike.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.modbus.config import Alarm, Config
from connectors.modbus.plan import ReadRequest
from core.sample import Point
from core.schema import EVENTS, EventKind
from core.severity import opcua_severity_level

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _State:
    """What the connector knows of one alarm."""

    alarm: Alarm
    tags: dict[str, str]  # the event's series: site, line, machine, kind
    condition_id: str
    offset_ns: int  # added to its events' time: alarms changing in one poll never collide
    active: bool | None = None  # None: not read yet in this run
    since_ns: int = 0  # when it last changed, as stored
    event_id: str = ""
    refresh: bool = True  # send it again at its next read if active (after a (re)connect)
    unread: str = ""  # why its last read failed ("" while it reads)


class AlarmStates:
    """The configured alarms of one connector, their last known states and the events due."""

    def __init__(self, config: Config, *, site: str, line: str) -> None:
        self._name = config.name
        # by id() of the configured alarm, which every read of it carries (hashing the model
        # itself costs more than the rest of a read)
        self._states: dict[int, _State] = {}
        for device in config.devices:
            for alarm in device.alarms:
                tags = {
                    "site": site,
                    "line": device.line or line,
                    "machine": alarm.machine or device.machine,
                    "kind": EventKind.ALARM.value,
                }
                offset = len(self._states)
                state = _State(alarm, tags, alarm.where(device.unit), offset)
                self._states[id(alarm)] = state
        self.read_errors = 0  # reads of an alarm's register that failed
        self.due: list[Point] = []  # events not handed on yet

    def refresh(self) -> None:
        """A new connection: send every active alarm again at its next read."""
        for state in self._states.values():
            state.refresh = True

    def read(self, request: ReadRequest, data: bytes, ts: int) -> None:
        """The answer to `request` (its raw data): record every change of its alarms."""
        bits = request.table.holds_bits
        for planned in request.alarms:
            state = self._states[id(planned.alarm)]
            if state.unread:
                _log.info("%s: alarm %s reads again", self._name, state.condition_id)
                state.unread = ""
            self._seen(state, planned.alarm.active(_word(bits, data, planned.start)), ts)

    def unread(self, requests: Iterable[ReadRequest], reason: str) -> None:
        """`requests` failed: their alarms keep their states; each is counted, and logged
        once until it reads again (those that fail together in one line)."""
        newly = []
        for request in requests:
            for planned in request.alarms:
                state = self._states[id(planned.alarm)]
                self.read_errors += 1
                if not state.unread:
                    newly.append(f"{planned.alarm.condition} ({state.condition_id})")
                state.unread = reason
        if newly:
            _log.warning(
                "%s: alarm %s could not be read: %s; it keeps its last state until it reads again",
                self._name,
                ", ".join(newly),
                reason,
            )

    def _seen(self, state: _State, active: bool, ts: int) -> None:
        """An event when the state changed (the first read counts when active), and the
        activation again when a refresh is due."""
        resend, state.refresh = state.refresh and active, False
        if active != state.active and (state.active is not None or active):
            state.since_ns, state.event_id = ts + state.offset_ns, uuid.uuid4().hex
        elif not resend:
            state.active = active
            return
        state.active = active
        self.due.append(self._point(state))

    def _point(self, state: _State) -> Point:
        alarm = state.alarm
        fields: dict[str, float | int | bool | str] = {
            "text": alarm.message or alarm.condition,
            "active": bool(state.active),
            "acked": False,  # Modbus has no acknowledgement: nobody acknowledged it
            "confirmed": False,
            "retain": bool(state.active),
            "comment": "",
            "source": alarm.source or state.tags["machine"],
            "condition": alarm.condition,
            "condition_id": state.condition_id,
            "alarm_severity": alarm.severity,
            "severity_level": int(opcua_severity_level(alarm.severity)),
            "event_id": state.event_id,
        }
        return Point(EVENTS.name, state.tags, fields, state.since_ns)

    def take(self) -> list[Point]:
        """The events due, handed on once."""
        due, self.due = self.due, []
        return due


def _word(bits: bool, data: bytes, start: int) -> int:
    """The bit (0 or 1) or register (0..65535) at `start` of a read's raw answer."""
    if bits:
        return data[start >> 3] >> (start & 7) & 1
    return data[2 * start] << 8 | data[2 * start + 1]
