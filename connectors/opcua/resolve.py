"""Turn parsed node addresses into asyncua NodeIds on a connected server.

Namespace URIs and browse paths can only be resolved against the live server, and must be
resolved again on every connect: a server restart may renumber its namespaces.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from typing import TypeVar

from asyncua import Client, ua

from connectors.opcua.datavalue import checked_value
from connectors.opcua.nodeid import BrowsePath, NodeAddress, NodeRef

_IDENTIFIER_TYPES = {
    "i": ua.NodeIdType.Numeric,
    "s": ua.NodeIdType.String,
    "g": ua.NodeIdType.Guid,
    "b": ua.NodeIdType.ByteString,
}
_HIERARCHICAL = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
_NAMESPACE_ARRAY = ua.NodeId(ua.Int32(ua.ObjectIds.Server_NamespaceArray))
_PATH_COMPLETE = 0xFFFFFFFF  # RemainingPathIndex of a target the whole path led to

T = TypeVar("T")
Resolved = ua.NodeId | str
"""A resolved NodeId, or the reason (a message) why the address names no node."""


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items: servers cap operations per request."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def resolve_all(
    client: Client,
    addresses: Sequence[NodeAddress],
    *,
    timeout_s: float,
    batch: int,
    pinned: dict[int, str] | None = None,
) -> list[Resolved]:
    """One NodeId or reason per address, in order, using one request per batch of paths.

    `pinned` (kept by the caller across sessions) holds the URI each namespace index an
    address uses had when first seen: an address by index (`ns=3`, or a browse path's `3:Name`)
    whose namespace has another URI now names another PLC's node, and is refused
    (`NamespaceMoved`) instead of read."""
    namespaces = await namespace_array(client, timeout_s)
    resolved: list[Resolved] = []
    paths: list[tuple[int, ua.BrowsePath]] = []
    for address in addresses:
        try:
            start = address.start if isinstance(address, BrowsePath) else address
            if pinned is not None:
                _check_indexes(address, namespaces, pinned)
            nodeid = to_ua_nodeid(start, namespaces)
        except NamespaceMoved as exc:
            resolved.append(Moved(exc))
            continue
        except LookupError as exc:
            resolved.append(str(exc))
            continue
        resolved.append(nodeid)
        if isinstance(address, BrowsePath):
            paths.append((len(resolved) - 1, to_ua_browse_path(nodeid, address)))
    for part in chunks(paths, batch):
        async with asyncio.timeout(timeout_s):
            results = await client.uaclient.translate_browsepaths_to_nodeids([p for _, p in part])
        for (index, _), result in zip(part, results, strict=True):
            resolved[index] = _path_target(result)
    return resolved


def to_ua_nodeid(ref: NodeRef, namespaces: Sequence[str]) -> ua.NodeId:
    """The asyncua NodeId for a parsed ref; LookupError if its namespace URI is unknown."""
    index = ref.namespace_index
    if ref.namespace_uri is not None:
        try:
            index = list(namespaces).index(ref.namespace_uri)
        except ValueError:
            raise LookupError(
                f"namespace {ref.namespace_uri!r} is not in the server's NamespaceArray"
            ) from None
    identifier = _ua_identifier(ref.identifier)
    return ua.NodeId(identifier, ua.Int16(index), _IDENTIFIER_TYPES[ref.kind.value])


def _ua_identifier(
    identifier: int | str | uuid.UUID | bytes,
) -> ua.Int32 | ua.String | ua.Guid | ua.ByteString:
    """The identifier as the wire type asyncua's NodeId declares (a subclass of its own type)."""
    if isinstance(identifier, int):
        return ua.Int32(identifier)
    if isinstance(identifier, str):
        return ua.String(identifier)
    if isinstance(identifier, bytes):
        return ua.ByteString(identifier)
    return ua.Guid(int=identifier.int)


def forward_element(
    reference: ua.NodeId, name: ua.QualifiedName, *, subtypes: bool
) -> ua.RelativePathElement:
    """One step of a browse path: forward along `reference` (and its subtypes if `subtypes`)."""
    # asyncua annotates its Boolean fields with the marker class ua.Boolean, which no bool is
    # (nor its own default True): the stubs are wrong, the values are what it encodes
    return ua.RelativePathElement(
        ReferenceTypeId=reference,
        IsInverse=False,  # type: ignore[arg-type]
        IncludeSubtypes=subtypes,  # type: ignore[arg-type]
        TargetName=name,
    )


def to_ua_browse_path(start: ua.NodeId, path: BrowsePath) -> ua.BrowsePath:
    """A BrowsePath that follows hierarchical references (and subtypes) forward."""
    elements = [
        forward_element(
            _HIERARCHICAL,
            ua.QualifiedName(element.name, element.namespace_index),
            subtypes=True,
        )
        for element in path.elements
    ]
    return ua.BrowsePath(StartingNode=start, RelativePath=ua.RelativePath(Elements=elements))


class NamespaceMoved(LookupError):
    """A namespace index that now holds another URI than when it was first seen."""


class Moved(str):
    """The reason an address was refused for a `NamespaceMoved`: the same for every address of
    that namespace, so the caller can say it once."""

    __slots__ = ()


def _check_indexes(address: NodeAddress, namespaces: Sequence[str], pinned: dict[int, str]) -> None:
    """Refuse an address whose namespace indexes no longer mean what they meant."""
    start = address.start if isinstance(address, BrowsePath) else address
    indexes = {start.namespace_index} if start.namespace_uri is None else set()
    if isinstance(address, BrowsePath):
        indexes |= {element.namespace_index for element in address.elements}
    for index in sorted(indexes - {0}):  # 0 is the standard's own, the same on every server
        now = namespaces[index] if index < len(namespaces) else None
        first = pinned.setdefault(index, now) if now is not None else pinned.get(index)
        if now != first:
            raise NamespaceMoved(
                f"namespace {index} was {first} and is {now or 'gone'} now (the server "
                f"renumbered its namespaces): not read, to read no other node; write the id "
                f"as nsu={first};... to follow it"
            )


async def namespace_array(client: Client, timeout_s: float) -> list[str]:
    """The server's namespace URIs, read on every connect: a restart may renumber them."""
    async with asyncio.timeout(timeout_s):
        (value,) = await client.uaclient.read_attributes([_NAMESPACE_ARRAY], ua.AttributeIds.Value)
    return list(checked_value(value))


def _path_target(result: ua.BrowsePathResult) -> Resolved:
    if not result.StatusCode.is_good():
        return f"browse path resolves to no node ({result.StatusCode.name})"
    complete = [t for t in result.Targets if t.RemainingPathIndex == _PATH_COMPLETE]
    if not complete:
        return "browse path leads outside this server"
    target = complete[0].TargetId
    return ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
