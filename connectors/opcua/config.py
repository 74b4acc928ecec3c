"""The config of one OPC UA connector entry, validated where an integrator can fix it.

Messages say what is wrong and how to fix it; the shared loader prefixes them with the file,
line and field path, so they never repeat the location.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from connectors.opcua.alarms import AlarmsConfig
from connectors.opcua.backfill import BackfillConfig
from connectors.opcua.nodeid import NodeAddress, parse_node, parse_node_id
from connectors.opcua.security import Auth, Security
from core.reconnect import Reconnect
from core.schema import KEEP_ALIVE_S

PositiveSeconds = Annotated[float, Field(gt=0)]


class Deadband(BaseModel):
    """A server-side DataChangeFilter: report only changes larger than `value`.

    `percent` is a percentage of the variable's EURange; servers without an EURange refuse it,
    and the connector then polls that tag instead (and logs why).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["none", "absolute", "percent"] = "none"
    value: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _percent_in_range(self) -> Deadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError(
                f"percent deadband {self.value} is over 100; give 0..100 (% of EURange)"
            )
        return self


NO_DEADBAND = Deadband()  # frozen, so every tag without one shares it


@dataclass(slots=True, kw_only=True, config=ConfigDict(extra="forbid"))
class Tag:
    """One PLC variable and the (line, machine, signal) series it feeds.

    A slotted dataclass, not a model: a plant-scale file holds tens of thousands of tags, and a
    model's instance dict and set of given fields cost ~1 kB a tag (~100 B as a dataclass).
    """

    machine: str = Field(min_length=1)
    signal: str = Field(min_length=1)
    line: str | None = None
    # Declared before `node` so that node's validator can see it.
    browse_from: str | None = None
    node: str
    deadband: Deadband = NO_DEADBAND
    # None: the connector's max_age_s
    max_age_s: float | None = Field(default=None, ge=0)

    @field_validator("browse_from")
    @classmethod
    def _start_node_parses(cls, browse_from: str | None) -> str | None:
        if browse_from is not None:
            parse_node_id(browse_from)
        return browse_from

    @field_validator("node")
    @classmethod
    def _node_parses(cls, node: str, info: ValidationInfo) -> str:
        parse_node(node, browse_from=info.data.get("browse_from"))
        return node

    def address(self) -> NodeAddress:
        """The parsed node id or browse path (raises ValueError with a fix if malformed)."""
        return parse_node(self.node, browse_from=self.browse_from)


class Config(BaseModel):
    """One `type: opcua` entry of the connectors file."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["opcua"]
    name: str = Field(min_length=1)
    endpoint: str
    # None: not given, an open session with a deprecation warning (see security.py)
    security: Security | None = None
    auth: Auth | None = None
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: float = Field(default=500.0, gt=0)
    # 0: on every change (exception-based), or the server's fastest rate where it cannot;
    # None: by exception where the server supports it, else the publishing interval (sampling)
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    poll_interval_s: PositiveSeconds = 1.0
    timeout_s: PositiveSeconds = 5.0
    # samples held between the server and the spool at most (memory stays flat when behind)
    buffer_samples: int = Field(default=100_000, gt=0)
    max_items_per_subscription: int = Field(default=1000, gt=0)
    # more tags than this go to more sessions (each has its own publish pipeline)
    max_items_per_session: int = Field(default=5000, gt=0)
    # keep-alive: a tag unchanged this long is recorded again (0: never)
    max_age_s: float = Field(default=KEEP_ALIVE_S, ge=0)
    # a silent server (no publish answer, no probe answer) counts as lost after this
    stale_after_s: PositiveSeconds | None = None
    reconnect: Reconnect = Field(default_factory=Reconnect)
    # PLC alarms and conditions into `events` (None: not subscribed)
    alarms: AlarmsConfig | None = None
    # after an outage, read the gap from the server's history (None: off)
    backfill: BackfillConfig | None = None
    tags: list[Tag] = Field(min_length=1)

    def max_age_of(self, tag: Tag) -> float:
        """The tag's keep-alive age: its own, else the connector's (0: no keep-alive)."""
        return self.max_age_s if tag.max_age_s is None else tag.max_age_s

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, url: str) -> str:
        return check_endpoint(url)

    @field_validator("tags")
    @classmethod
    def _unique_series(cls, tags: list[Tag]) -> list[Tag]:
        seen: dict[tuple[str | None, str, str], int] = {}
        for index, tag in enumerate(tags):
            key = (tag.line, tag.machine, tag.signal)
            if key in seen:
                raise ValueError(
                    f"tags[{seen[key]}] and tags[{index}] both feed machine {tag.machine!r} "
                    f"signal {tag.signal!r}; give each series one tag "
                    "(rename the signal or set another line)"
                )
            seen[key] = index
        return tags


def check_endpoint(url: str) -> str:
    """Accept `opc.tcp://host:port[/path]` only; credentials never go in the URL (it is logged)."""
    hint = "write opc.tcp://host:port[/path], e.g. opc.tcp://192.168.0.10:4840"
    parts = urlsplit(url.strip())
    if parts.scheme != "opc.tcp":
        raise ValueError(f"endpoint {url!r} must start with opc.tcp://; {hint}")
    if "@" in parts.netloc:
        raise ValueError(
            "endpoint must not hold a user or password (it is logged and stored as a tag); "
            "remove the user@ part"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or port == 0:
        raise ValueError(f"endpoint {url!r} needs a host and a port 1..65535; {hint}")
    if parts.query or parts.fragment:
        raise ValueError(
            f"endpoint {url!r} has a ?query or #fragment, which OPC UA does not use; {hint}"
        )
    return url.strip()
