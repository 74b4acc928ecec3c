"""Reconnecting to a PLC that went away: the config of the backoff and the backoff itself.

Shared by every input so that all of them behave alike: delays double from `min_s` to `max_s`,
each jittered, so that connectors that lost the same device do not come back in lockstep.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core.core_schema import ValidationInfo


class Reconnect(BaseModel):
    """`reconnect: {min_s, max_s, auth_retry_s}` of a connector entry.

    `auth_retry_s` is the wait after the server refused our certificate or login: retrying
    at once cannot help and may lock the account on a PLC that counts failed logins.
    """

    model_config = ConfigDict(extra="forbid")

    min_s: float = Field(0.5, gt=0)
    max_s: float = Field(10.0, gt=0)
    auth_retry_s: float = Field(300.0, gt=0)

    @field_validator("max_s")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_s")
        if low is not None and value < low:
            raise ValueError(f"max_s ({value}) is below min_s ({low}): raise max_s or lower min_s")
        return value


class Backoff:
    """Delays between connect attempts: doubling up to the bound, jittered down by up to half."""

    def __init__(self, bounds: Reconnect) -> None:
        self._bounds = bounds
        self._delay = bounds.min_s

    def next(self) -> float:
        """The pause before the next attempt."""
        delay = self._delay
        self._delay = min(delay * 2, self._bounds.max_s)
        return max(self._bounds.min_s / 2, random.uniform(delay / 2, delay))

    def reset(self) -> None:
        """The connection works again: the next loss starts from the shortest delay."""
        self._delay = self._bounds.min_s
