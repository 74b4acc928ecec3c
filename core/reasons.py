"""Downtime reasons: the codes a PLC's reason-code tag carries while its machine stands, what
each is called and whether the loss was planned.

One table for the whole project: the stop tracker (analytics.downtime) names stops with it, the
CLI and the dashboards show its names. A plant whose PLCs use other codes adds or replaces
entries per machine in a reasons file (analytics.downtime.load_reasons). The simulated PLCs use
exactly these codes (plc_sim.machines.StopReason; a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

# The telemetry signal that carries a machine's reason code: a connectors file maps the PLC's
# reason-code tag to it, as it maps the state tag to `state`.
REASON_SIGNAL = "reason_code"

# A stop shorter than this is a micro-stop (a "small stop" of the six big losses): counted apart,
# since dozens of them cost as much as one breakdown and want a different fix.
MICRO_STOP_S = 120.0


class Category(StrEnum):
    """Whether a stop was meant to happen: both lower availability, the fix differs."""

    PLANNED = "planned"  # cleaning, changeover, maintenance: shorten it
    UNPLANNED = "unplanned"  # breakdowns, jams, starvation: prevent it


@dataclass(frozen=True, slots=True)
class Reason:
    code: int
    name: str
    category: Category


class ReasonCode(IntEnum):
    """The standard codes. 0 while a machine stands means its PLC gave no reason: the stop
    counts as unplanned until an operator labels it."""

    NONE = 0
    JAM = 1
    BREAKDOWN = 2
    STARVED = 3
    BLOCKED = 4
    FLOW_DIVERSION = 5
    NO_DEMAND = 6
    CLEANING = 10
    CHANGEOVER = 11
    MAINTENANCE = 12


UNASSIGNED = Reason(ReasonCode.NONE, "unassigned", Category.UNPLANNED)
# the machine stands ready but the line does not need it (an unloaded compressor): not a loss
# the machine caused, so it is booked with the stops the plan makes
_PLANNED = frozenset(
    {ReasonCode.NO_DEMAND, ReasonCode.CLEANING, ReasonCode.CHANGEOVER, ReasonCode.MAINTENANCE}
)

STANDARD_REASONS: Mapping[int, Reason] = {
    code.value: Reason(
        code.value,
        UNASSIGNED.name if code is ReasonCode.NONE else code.name.lower(),
        Category.PLANNED if code in _PLANNED else Category.UNPLANNED,
    )
    for code in ReasonCode
}


def reason_of(code: float | None, table: Mapping[int, Reason] = STANDARD_REASONS) -> Reason:
    """The reason a code stands for; an unknown code keeps its number in its name."""
    if code is None or code != code:  # NaN: no reading
        return UNASSIGNED
    known = table.get(int(code))
    if known is None:
        return Reason(int(code), f"code {int(code)}", UNASSIGNED.category)
    return known
