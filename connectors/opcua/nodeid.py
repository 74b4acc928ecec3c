"""Parsing of the node addresses a config file may hold, free of asyncua objects.

Integrators copy node ids out of vendor tools (UaExpert, TIA Portal, TwinCAT), so every standard
string form is accepted: `ns=N;i=`, `ns=N;s=`, `ns=N;g=`, `ns=N;b=`, bare `i=85` (namespace 0),
`nsu=<uri>;...` (namespace by URI, resolved at connect because indexes can change when a server
is reconfigured) and browse paths (`/Objects/2:Line1/2:Temp`, resolved at connect). Keeping the
parser pure makes every error message testable without a server; `resolve.py` converts the
results to asyncua objects at the edge.
"""

from __future__ import annotations

import binascii
import uuid
from base64 import b64decode
from dataclasses import dataclass
from enum import Enum

MAX_NAMESPACE_INDEX = 0xFFFF
MAX_NUMERIC_ID = 0xFFFFFFFF
EXAMPLES = "e.g. ns=2;s=Line1.Temp, ns=3;i=1001, i=2258 or /Objects/2:Line1/2:Temp"


class IdKind(Enum):
    """The identifier types of OPC UA Part 6 §5.3.1.10, keyed by their string prefix."""

    NUMERIC = "i"
    STRING = "s"
    GUID = "g"
    OPAQUE = "b"


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node id as written; exactly one of `namespace_uri` or `namespace_index` is meaningful."""

    kind: IdKind
    identifier: int | str | uuid.UUID | bytes
    namespace_index: int = 0
    namespace_uri: str | None = None


@dataclass(frozen=True, slots=True)
class PathElement:
    """One hop of a browse path: a browse name qualified by its namespace index."""

    namespace_index: int
    name: str


@dataclass(frozen=True, slots=True)
class BrowsePath:
    """A path of browse names followed over hierarchical references from `start`."""

    start: NodeRef
    elements: tuple[PathElement, ...]


ROOT_FOLDER = NodeRef(IdKind.NUMERIC, 84)
NodeAddress = NodeRef | BrowsePath


def parse_node(text: str, *, browse_from: str | None = None) -> NodeAddress:
    """Parse a config `node` string; a leading '/' makes it a browse path.

    A browse path starts at the Root folder (so it reads like `/Objects/...`) unless
    `browse_from` names another start node.
    """
    text = text.strip()
    if not text:
        raise ValueError(f"node is empty; write a node id or browse path, {EXAMPLES}")
    if text.startswith("/"):
        start = ROOT_FOLDER if browse_from is None else parse_node_id(browse_from)
        return BrowsePath(start, parse_browse_path(text))
    if browse_from is not None:
        raise ValueError(
            f"browse_from only applies to browse paths, but node {text!r} is a node id; "
            "write node as a path starting with '/' or drop browse_from"
        )
    return parse_node_id(text)


def parse_node_id(text: str) -> NodeRef:
    """Parse `[ns=N;|nsu=URI;]<i|s|g|b>=<identifier>` into a `NodeRef`."""
    rest = text.strip()
    namespace_index = 0
    namespace_uri: str | None = None
    key, value, rest = _next_field(rest, text)
    if key == "ns":
        namespace_index = _namespace_index(value)
        key, value, rest = _next_field(rest, text)
    elif key == "nsu":
        if not value:
            raise ValueError(f"namespace URI is empty in {text!r}; write nsu=urn:vendor:plc;s=Tag")
        namespace_uri = value
        key, value, rest = _next_field(rest, text)
    if key in ("ns", "nsu"):
        raise ValueError(f"{text!r} gives the namespace twice; use either ns=<index> or nsu=<uri>")
    if key is None:
        raise ValueError(f"{text!r} has no identifier; add one of i=, s=, g= or b=, {EXAMPLES}")
    kind = _id_kind(key, text)
    if kind is IdKind.STRING:
        value = ";".join((value, rest)) if rest else value  # string ids may hold ';'
        rest = ""
    if rest:
        raise ValueError(f"unexpected text {rest!r} after the identifier in {text!r}; remove it")
    return NodeRef(kind, _identifier(kind, value, text), namespace_index, namespace_uri)


def parse_browse_path(text: str) -> tuple[PathElement, ...]:
    """Parse `/N:Name/N:Name...`; a name without `N:` is in namespace 0 (like `Objects`)."""
    parts = text.strip().removeprefix("/").split("/")
    if parts == [""]:
        raise ValueError(
            f"browse path {text!r} has no elements; write e.g. /Objects/2:Line1/2:Temp"
        )
    return tuple(_path_element(part, text) for part in parts)


def _next_field(rest: str, text: str) -> tuple[str | None, str, str]:
    """Split `key=value;rest` off the front; (None, '', '') when nothing is left."""
    if not rest:
        return None, "", ""
    field, _, tail = rest.partition(";")
    key, eq, value = field.partition("=")
    if not eq:
        raise ValueError(f"part {field!r} of {text!r} is not key=value; write {EXAMPLES}")
    return key.strip(), value, tail


def _namespace_index(value: str) -> int:
    try:
        index = int(value.strip())
    except ValueError:
        index = -1
    if not 0 <= index <= MAX_NAMESPACE_INDEX:
        raise ValueError(
            f"namespace index {value!r} is not an integer 0..{MAX_NAMESPACE_INDEX}; "
            "write e.g. ns=2;s=Tag"
        )
    return index


def _id_kind(key: str, text: str) -> IdKind:
    try:
        return IdKind(key)
    except ValueError:
        raise ValueError(
            f"unknown identifier type {key!r} in {text!r}; use i= (numeric), s= (string), "
            "g= (GUID) or b= (opaque, base64)"
        ) from None


def _identifier(kind: IdKind, value: str, text: str) -> int | str | uuid.UUID | bytes:
    if kind is IdKind.STRING:
        if not value:
            raise ValueError(
                f"string identifier is empty in {text!r}; write e.g. ns=2;s=Line1.Temp"
            )
        return value
    value = value.strip()
    if kind is IdKind.NUMERIC:
        return _numeric(value, text)
    if kind is IdKind.GUID:
        return _guid(value, text)
    return _opaque(value, text)


def _numeric(value: str, text: str) -> int:
    number = int(value) if value.isdecimal() else -1
    if not 0 <= number <= MAX_NUMERIC_ID:
        raise ValueError(
            f"numeric identifier {value!r} in {text!r} is not an integer 0..{MAX_NUMERIC_ID}; "
            "for a name use s= instead of i="
        )
    return number


def _guid(value: str, text: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(
            f"GUID identifier {value!r} in {text!r} is not a GUID; "
            "write e.g. g=09087e75-8e5e-499b-954f-f2a9603db28a"
        ) from None


def _opaque(value: str, text: str) -> bytes:
    try:
        decoded = b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise ValueError(
            f"opaque identifier {value!r} in {text!r} is not non-empty base64; "
            "write e.g. b=M/RbKBsRVkePCePcx24oRA=="
        )
    return decoded


def _path_element(part: str, text: str) -> PathElement:
    prefix, colon, name = part.partition(":")
    if not colon:
        prefix, name = "0", part
    if not name.strip():
        raise ValueError(
            f"browse path {text!r} has an empty name; "
            "separate names with single '/', e.g. /Objects/2:Line1"
        )
    if not prefix.isdecimal() or int(prefix) > MAX_NAMESPACE_INDEX:
        raise ValueError(
            f"browse name {part!r} in {text!r} has namespace {prefix!r}, not an integer "
            f"0..{MAX_NAMESPACE_INDEX}; write N:Name, e.g. 2:Line1"
        )
    return PathElement(int(prefix), name)
