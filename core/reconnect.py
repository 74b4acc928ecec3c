"""Reconnecting to a device or broker that went away: the config of the backoff and the backoff.

Shared by every input (PLC connectors, the MQTT ingest) so that all of them behave alike; the
backoff itself is the project's one (core.backoff): delays double from `min_s` to `max_s`,
jittered within the cap, so that inputs that lost the same device do not come back in lockstep.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core.core_schema import ValidationInfo

from core import backoff

# The wait after a server refused our certificate or login (OPC UA, MQTT): one source.
AUTH_RETRY_S = 300.0


class Reconnect(BaseModel):
    """`reconnect: {min_s, max_s, auth_retry_s}` of a connector entry.

    `auth_retry_s` is the wait after the server refused our certificate or login: retrying
    at once cannot help and may lock the account on a PLC that counts failed logins.
    """

    model_config = ConfigDict(extra="forbid")

    min_s: float = Field(0.5, gt=0)
    max_s: float = Field(10.0, gt=0)
    auth_retry_s: float = Field(AUTH_RETRY_S, gt=0)

    @field_validator("max_s")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_s")
        if low is not None and value < low:
            raise ValueError(f"max_s ({value}) is below min_s ({low}): raise max_s or lower min_s")
        return value


class Backoff(backoff.Backoff):
    """Delays between connect attempts, within a connector's `reconnect` bounds."""

    def __init__(self, bounds: Reconnect) -> None:
        super().__init__(bounds.min_s, bounds.max_s)
