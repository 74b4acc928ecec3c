"""The line's PLC alarms: OPC UA limit alarms (Part 9 conditions) on the machines' signals.

The line's OPC UA server carries the alarms of every machine (the Modbus ones too), as a line
controller does; each Modbus device also shows its own as alarm bits (plc_sim.registers,
`modbus_alarms`), as drives and controllers do. Each alarm is an ExclusiveLimitAlarmType
condition evaluated on every tick: it turns active when its signal passes the limit (a fault
injection that drives the signal there raises it), inactive when the signal is back, and needs
an operator's Acknowledge (with a comment); it is retained (ConditionRefresh re-sends it) while
active or unacknowledged. Events come from the Server object; the condition objects live in
Objects/<line>/Alarms.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from plc_sim.spec import LineSpec

log = logging.getLogger(__name__)

_ACKNOWLEDGE = ua.NodeId(ua.Int32(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge))


@dataclass(frozen=True, slots=True)
class LimitAlarm:
    """One alarm: active while `signal` is above (`high`) or below the limit."""

    machine: str
    signal: str
    name: str
    limit: float
    high: bool
    severity: int  # OPC UA 1-1000

    def passed(self, value: float) -> bool:
        return value > self.limit if self.high else value < self.limit

    def text(self, value: float) -> str:
        side = "above" if self.high else "below"
        return f"{self.machine} {self.signal} {value:.2f} {side} {self.limit:g}"

    @property
    def description(self) -> str:
        """What the alarm means, without a value: a Modbus alarm's configured message."""
        return f"{self.signal} {'above' if self.high else 'below'} {self.limit:g}"


# The default line's alarms (an alarm whose machine or signal a line lacks is left out). Limits
# sit clear of normal operation (a 5-minute run: motor 37-45 °C, current 7.8-9.3 A, air 6.5-7.5
# bar, holding tube 72.6-72.8 °C) and inside what the matching fault reaches.
LIMIT_ALARMS = (
    LimitAlarm("conveyor", "motor_temp_c", "HighTemperature", 52.0, True, 700),
    LimitAlarm("air_compressor", "motor_temp_c", "HighTemperature", 52.0, True, 700),
    LimitAlarm("conveyor", "current_a", "Overcurrent", 13.0, True, 850),
    LimitAlarm("air_compressor", "pressure_bar", "LowPressure", 5.5, False, 600),
    LimitAlarm("pasteurizer", "holding_temp_c", "LowHoldingTemperature", 71.7, False, 900),
)


def alarms_of(spec: LineSpec) -> list[LimitAlarm]:
    return [
        alarm
        for alarm in LIMIT_ALARMS
        if alarm.machine in spec.machines and alarm.signal in spec.machines[alarm.machine].signals
    ]


def modbus_alarms(spec: LineSpec) -> dict[str, list[LimitAlarm]]:
    """Each Modbus machine's alarms, in the order of their alarm bits."""
    return {
        name: [alarm for alarm in alarms_of(spec) if alarm.machine == name]
        for name, machine in spec.machines.items()
        if machine.protocol == "modbus"
    }


def alarm_bits(alarms: list[LimitAlarm], values: Mapping[tuple[str, str], float]) -> list[bool]:
    """The alarm bits of one device: bit N on while alarms[N] is active."""
    return [alarm.passed(values[(alarm.machine, alarm.signal)]) for alarm in alarms]


@dataclass(slots=True)
class _State:
    """One condition's state, shared by every server of the line (one PLC, two endpoints)."""

    alarm: LimitAlarm
    node_id: ua.NodeId
    active: bool = False
    acked: bool = True
    event_id: bytes = b""
    message: str = ""
    comment: str = ""
    events: list[Any] = field(default_factory=list)  # one event object per server

    @property
    def retain(self) -> bool:
        return self.active or not self.acked


class LineAlarms:
    """The conditions of one line; `update` evaluates them on each tick."""

    def __init__(self, spec: LineSpec, ns: int) -> None:
        line = spec.line
        self._folder_id = ua.NodeId(ua.String(f"{line}.Alarms"), ua.Int16(ns))
        self._ns = ns
        self._states = [
            _State(
                alarm,
                ua.NodeId(ua.String(f"{line}.Alarms.{alarm.machine}.{alarm.name}"), ua.Int16(ns)),
            )
            for alarm in alarms_of(spec)
        ]
        self._by_node = {state.node_id: state for state in self._states}
        self._servers: list[Server] = []

    async def serve(self, server: Server, parent: ua.NodeId) -> None:
        """Add the condition objects and the Acknowledge method to `server` (before start)."""
        folder = await server.get_node(parent).add_object(
            self._folder_id, ua.QualifiedName("Alarms", self._ns)
        )
        for state in self._states:
            alarm = state.alarm
            await folder.add_object(
                state.node_id, ua.QualifiedName(f"{alarm.machine}.{alarm.name}", self._ns)
            )
            generator = await server.get_event_generator(
                ua.ObjectIds.ExclusiveLimitAlarmType, ua.ObjectIds.Server
            )
            event = generator.event
            event.SourceNode, event.SourceName = state.node_id, alarm.machine
            event.ConditionName, event.NodeId = alarm.name, state.node_id
            event.Severity = alarm.severity
            state.events.append(event)
            self._set(state, event)
        server.iserver.isession.add_method_callback(_ACKNOWLEDGE, self._acknowledge)
        self._servers.append(server)

    def forget(self) -> None:
        """The servers stopped: a new start adds its own."""
        self._servers.clear()
        for state in self._states:
            state.events.clear()

    async def update(self, values: Mapping[tuple[str, str], float], ts: datetime) -> None:
        for state in self._states:
            alarm = state.alarm
            value = values.get((alarm.machine, alarm.signal))
            if value is None or alarm.passed(value) == state.active:
                continue
            state.active = not state.active
            if state.active:
                state.acked, state.comment = False, ""
                state.message = alarm.text(value)
            else:
                state.message = f"{alarm.text(value)}: back to normal"
            log.info("alarm %s/%s %s", alarm.machine, alarm.name, state.message)
            await self._trigger(state, ts)

    async def _trigger(self, state: _State, ts: datetime) -> None:
        state.event_id = uuid.uuid4().bytes
        now = datetime.now(UTC)
        for server, event in zip(self._servers, state.events, strict=True):
            self._set(state, event)
            event.Time, event.ReceiveTime = ts, now
            await server.iserver.subscription_service.trigger_event(event)

    @staticmethod
    def _set(state: _State, event: Any) -> None:
        event.EventId = state.event_id
        event.Message = ua.LocalizedText(state.message)
        event.Comment = ua.LocalizedText(state.comment)
        event.Retain = state.retain
        setattr(event, "ActiveState/Id", state.active)
        event.ActiveState = ua.LocalizedText("Active" if state.active else "Inactive")
        setattr(event, "AckedState/Id", state.acked)
        event.AckedState = ua.LocalizedText("Acknowledged" if state.acked else "Unacknowledged")
        setattr(event, "ConfirmedState/Id", state.acked)
        setattr(event, "EnabledState/Id", True)

    async def _acknowledge(self, parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
        """Acknowledge(EventId, Comment) called on a condition object."""
        state = self._by_node.get(parent)
        if state is None:
            return _status(ua.StatusCodes.BadMethodInvalid)
        if len(args) != 2:
            return _status(ua.StatusCodes.BadArgumentsMissing)
        event_id, comment = (arg.Value for arg in args)
        if event_id != state.event_id:
            return _status(ua.StatusCodes.BadEventIdUnknown)
        if state.acked:
            return _status(ua.StatusCodes.BadConditionBranchAlreadyAcked)
        state.acked = True
        state.comment = str(comment.Text or "") if isinstance(comment, ua.LocalizedText) else ""
        alarm = state.alarm
        log.info("alarm %s/%s acknowledged: %s", alarm.machine, alarm.name, state.comment)
        await self._trigger(state, datetime.now(UTC))
        return _status(ua.StatusCodes.Good)


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))
