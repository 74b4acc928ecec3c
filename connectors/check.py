"""What `shopfloor check` learns about one tag: read once, fine or the exact problem.

Each plugin reads its tags once the same way its input does and reports one `TagCheck` per
tag, so that commissioning shows what the running connector will see.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagCheck:
    """The outcome for one configured tag. `problem` is empty when the tag reads fine."""

    machine: str
    signal: str
    address: str
    value: float | None = None
    unit: str = ""
    problem: str = ""
    text: str | None = None  # what a value that is not one number is stored as (shortened)

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True, slots=True)
class ConnectorCheck:
    """The outcome for one connector: its tags, and notes about the endpoint (warnings)."""

    name: str
    endpoint: str
    tags: list[TagCheck]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return all(tag.ok for tag in self.tags)
