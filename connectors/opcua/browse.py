"""The address space of a server as an integrator needs it: variables with type, unit, access.

Browsing is breadth-first with one Browse request per level (chunked) and one Read per batch
of variables, so a PLC with thousands of nodes costs a few dozen round trips, not thousands.
Properties (EURange, EngineeringUnits, ...) are read for units but are not listed as nodes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

from asyncua import Client, ua

from connectors.opcua.enums import enum_names_of
from connectors.opcua.resolve import chunks, forward_element, namespace_array
from core.units import suffix_for, unit_of

BATCH = 500
_Child = tuple[ua.ReferenceDescription, tuple[str, ...]]
_Children = dict[str, list[_Child]]
_HIERARCHICAL = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
_HAS_PROPERTY = ua.NodeId(ua.Int32(ua.ObjectIds.HasProperty))
_LISTED = ua.NodeClass.Object | ua.NodeClass.Variable
_STORED_TYPES = frozenset(
    {
        ua.ObjectIds.Boolean,
        ua.ObjectIds.SByte,
        ua.ObjectIds.Byte,
        ua.ObjectIds.Int16,
        ua.ObjectIds.UInt16,
        ua.ObjectIds.Int32,
        ua.ObjectIds.UInt32,
        ua.ObjectIds.Int64,
        ua.ObjectIds.UInt64,
        ua.ObjectIds.Float,
        ua.ObjectIds.Double,
        # not numbers, stored as text (docs/data-model.md, "Values")
        ua.ObjectIds.String,
        ua.ObjectIds.LocalizedText,
        ua.ObjectIds.QualifiedName,
        ua.ObjectIds.Guid,
        ua.ObjectIds.DateTime,
    }
)


@dataclass(frozen=True, slots=True)
class BrowsedNode:
    """One object or variable; `path` is the browse names from the start node down."""

    node_id: str
    browse_name: str  # N:Name
    path: tuple[str, ...]
    is_variable: bool
    data_type: str = ""
    unit: str = ""
    access: str = ""
    stored: bool = False  # a type the connector stores (a number, a text, an enumeration)
    config_id: str = ""  # node_id with its namespace URI (nsu=), as a config should name it

    @property
    def depth(self) -> int:
        return len(self.path) - 1

    def matches(self, pattern: str) -> bool:
        """Glob over the slash-joined path or the node id, case-insensitive."""
        text = "/".join(self.path).lower()
        pattern = pattern.lower()
        return fnmatch.fnmatch(text, pattern) or fnmatch.fnmatch(self.node_id.lower(), pattern)


async def browse_tree(
    client: Client,
    start: ua.NodeId,
    *,
    max_depth: int,
    timeout_s: float,
    standard_nodes: bool = False,
) -> list[BrowsedNode]:
    """Objects and variables below `start`, in tree order (a parent before its children).

    Nodes of namespace 0 (the standard Server object and its kin) are left out unless
    `standard_nodes` is set.
    """
    namespaces = await namespace_array(client, timeout_s)
    children: _Children = {}
    level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(start, ())]
    seen = {start}
    for _ in range(max_depth):
        found = await _browse_level(client, level, timeout_s)
        level = []
        for (parent, path), refs in found.items():
            kept = []
            for ref in refs:
                node = ref.NodeId
                if node in seen or (node.NamespaceIndex == 0 and not standard_nodes):
                    continue
                seen.add(node)
                kept.append((ref, (*path, ref.BrowseName.Name)))
                level.append((node, (*path, ref.BrowseName.Name)))
            children[parent.to_string()] = kept
        if not level:
            break
    ordered = list(_in_tree_order(children, start.to_string()))
    variables = [ref.NodeId for ref, _ in ordered if ref.NodeClass == ua.NodeClass.Variable]
    details = await _variable_details(client, variables, timeout_s)
    return [_node(ref, path, details.get(ref.NodeId), namespaces) for ref, path in ordered]


async def _browse_level(
    client: Client, level: list[tuple[ua.NodeId, tuple[str, ...]]], timeout_s: float
) -> dict[tuple[ua.NodeId, tuple[str, ...]], list[ua.ReferenceDescription]]:
    found = {}
    for part in chunks(level, BATCH):
        params = ua.BrowseParameters(
            NodesToBrowse=[
                ua.BrowseDescription(
                    NodeId=node,
                    BrowseDirection=ua.BrowseDirection.Forward,
                    ReferenceTypeId=_HIERARCHICAL,
                    IncludeSubtypes=True,
                    NodeClassMask=_LISTED,
                    ResultMask=ua.BrowseResultMask.All,
                )
                for node, _ in part
            ]
        )
        async with asyncio.timeout(timeout_s):
            results = await client.uaclient.browse(params)
            for key, result in zip(part, results, strict=True):
                refs = list(result.References)
                point = result.ContinuationPoint
                while point:
                    more = await client.uaclient.browse_next(
                        ua.BrowseNextParameters(ContinuationPoints=[point])
                    )
                    refs += more[0].References
                    point = more[0].ContinuationPoint
                found[key] = [r for r in refs if r.ReferenceTypeId != _HAS_PROPERTY]
    return found


def _in_tree_order(children: _Children, key: str) -> Iterator[_Child]:
    for ref, path in children.get(key, []):
        yield ref, path
        yield from _in_tree_order(children, ref.NodeId.to_string())


@dataclass(frozen=True, slots=True)
class _Details:
    data_type: str
    stored: bool
    access: str
    unit: str


async def _variable_details(
    client: Client, nodes: Sequence[ua.NodeId], timeout_s: float
) -> dict[ua.NodeId, _Details]:
    types = await _read(client, nodes, ua.AttributeIds.DataType, timeout_s)
    ranks = await _read(client, nodes, ua.AttributeIds.ValueRank, timeout_s)
    dimensions = await _read(client, nodes, ua.AttributeIds.ArrayDimensions, timeout_s)
    access = await _read(client, nodes, ua.AttributeIds.UserAccessLevel, timeout_s)
    units = await read_units(client, nodes, timeout_s=timeout_s)
    type_ids = {dv.Value.Value for dv in types if _good(dv)}
    names = await _type_names(client, list(type_ids), timeout_s)
    enums = await enum_names_of(client, list(type_ids), timeout_s=timeout_s)
    details = {}
    for node, type_dv, rank_dv, dims_dv, access_dv, unit in zip(
        nodes, types, ranks, dimensions, access, units, strict=True
    ):
        type_id = type_dv.Value.Value if _good(type_dv) else None
        built_in = type_id is not None and type_id.NamespaceIndex == 0
        shown = names.get(type_id, "?") if type_id is not None else "?"
        if type_id in enums:
            shown += " {" + ", ".join(f"{k}: {v}" for k, v in enums[type_id].items()) + "}"
        details[node] = _Details(
            data_type=shown + _dimensions(rank_dv, dims_dv),
            stored=type_id in enums
            or (built_in and type_id is not None and type_id.Identifier in _STORED_TYPES),
            access=_access(access_dv.Value.Value if _good(access_dv) else None),
            unit=unit,
        )
    return details


def _dimensions(rank: ua.DataValue, dimensions: ua.DataValue) -> str:
    """`[10]` for a Float[10], `[]` for an array of unknown length, '' for a scalar."""
    if not _good(rank) or rank.Value.Value is None or rank.Value.Value < 1:
        return ""
    sizes = dimensions.Value.Value if _good(dimensions) else None
    return "[" + ",".join(str(n) if n else "" for n in sizes or ()) + "]"


class _GoodValue(Protocol):
    """A DataValue that `_good` passed: it has a value."""

    Value: ua.Variant


def _good(dv: ua.DataValue) -> TypeGuard[_GoodValue]:
    return (dv.StatusCode is None or dv.StatusCode.is_good()) and dv.Value is not None


def _access(level: int | None) -> str:
    if level is None:
        return "?"
    readable = level & ua.AccessLevel.CurrentRead.mask
    writable = level & ua.AccessLevel.CurrentWrite.mask
    return {(True, True): "read/write", (True, False): "read", (False, True): "write"}.get(
        (bool(readable), bool(writable)), "none"
    )


async def _read(
    client: Client, nodes: Sequence[ua.NodeId], attribute: ua.AttributeIds, timeout_s: float
) -> list[ua.DataValue]:
    values: list[ua.DataValue] = []
    for part in chunks(nodes, BATCH):
        async with asyncio.timeout(timeout_s):
            values += await client.uaclient.read_attributes(list(part), attribute)
    return values


async def _type_names(
    client: Client, type_ids: Sequence[ua.NodeId], timeout_s: float
) -> dict[ua.NodeId, str]:
    """Standard types by their known names, vendor types by their browse name."""
    names: dict[ua.NodeId, str] = {}
    unknown = []
    for type_id in set(type_ids):
        identifier = type_id.Identifier
        if (
            type_id.NamespaceIndex == 0
            and isinstance(identifier, int)
            and identifier in ua.ObjectIdNames
        ):
            names[type_id] = ua.ObjectIdNames[identifier]
        else:
            unknown.append(type_id)
    for type_id, dv in zip(
        unknown, await _read(client, unknown, ua.AttributeIds.BrowseName, timeout_s), strict=True
    ):
        names[type_id] = dv.Value.Value.Name if _good(dv) else type_id.to_string()
    return names


async def read_units(client: Client, nodes: Sequence[ua.NodeId], *, timeout_s: float) -> list[str]:
    """Each variable's EngineeringUnits display name ('' where it has none)."""
    paths = [
        ua.BrowsePath(
            StartingNode=node,
            RelativePath=ua.RelativePath(
                Elements=[
                    forward_element(
                        _HAS_PROPERTY, ua.QualifiedName("EngineeringUnits", 0), subtypes=False
                    )
                ]
            ),
        )
        for node in nodes
    ]
    targets: list[ua.NodeId | None] = []
    for part in chunks(paths, BATCH):
        async with asyncio.timeout(timeout_s):
            results = await client.uaclient.translate_browsepaths_to_nodeids(list(part))
        targets += [
            _expanded(r.Targets[0].TargetId) if r.StatusCode.is_good() and r.Targets else None
            for r in results
        ]
    found = [t for t in targets if t is not None]
    values = iter(await _read(client, found, ua.AttributeIds.Value, timeout_s))
    units = []
    for target in targets:
        dv = next(values) if target is not None else None
        info = dv.Value.Value if dv is not None and _good(dv) else None
        units.append(info.DisplayName.Text or "" if isinstance(info, ua.EUInformation) else "")
    return units


def _expanded(target: ua.ExpandedNodeId) -> ua.NodeId:
    return ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)


def _node(
    ref: ua.ReferenceDescription,
    path: tuple[str, ...],
    details: _Details | None,
    namespaces: Sequence[str],
) -> BrowsedNode:
    name = ref.BrowseName
    node_id = ref.NodeId.to_string()
    common = {
        "node_id": node_id,
        "browse_name": f"{name.NamespaceIndex}:{name.Name}",
        "path": path,
        "config_id": _with_uri(ref.NodeId, node_id, namespaces),
    }
    if details is None:
        return BrowsedNode(**common, is_variable=False)
    return BrowsedNode(
        **common,
        is_variable=True,
        data_type=details.data_type,
        unit=details.unit,
        access=details.access,
        stored=details.stored,
    )


def _with_uri(node: ua.ExpandedNodeId, node_id: str, namespaces: Sequence[str]) -> str:
    """`ns=3;s=x` as `nsu=URI;s=x`: an index can change when the server restarts, its URI
    does not. Namespace 0 (the standard's) stays as it is."""
    index = node.NamespaceIndex
    if not index or index >= len(namespaces) or not node_id.startswith(f"ns={index};"):
        return node_id
    return f"nsu={namespaces[index]};" + node_id.split(";", 1)[1]


def select(nodes: Sequence[BrowsedNode], pattern: str | None) -> list[BrowsedNode]:
    """The variables matching `pattern` (all when None) and the objects above them."""
    if pattern is None:
        return list(nodes)
    chosen = {n.path for n in nodes if n.is_variable and n.matches(pattern)}
    ancestors = {path[:i] for path in chosen for i in range(1, len(path))}
    return [n for n in nodes if n.path in chosen or n.path in ancestors]


def signal_name(browse_name: str) -> str:
    """A historian-friendly name: `ProductTemp` -> `product_temp`, `"DB 1".x` -> `db_1_x`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", browse_name)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_") or "value"


def with_unit(signal: str, unit: str) -> str:
    """The signal name carrying the server's EngineeringUnits as its suffix (the data model
    keeps units in names: `temperature` in °C -> `temperature_c`), unless it already does."""
    suffix = suffix_for(unit) if unit else None
    if suffix is None or unit_of(signal) == unit:
        return signal
    return signal + suffix


def connector_entry(
    nodes: Sequence[BrowsedNode],
    *,
    name: str,
    endpoint: str,
    security: dict[str, Any],
    auth: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[BrowsedNode]]:
    """A `type: opcua` connectors-file entry reading the variables among `nodes` whose type the
    connector stores, by namespace URI (`nsu=`), and the variables left out (a type it does not
    store, or not readable).

    The machine is the browse name of a variable's parent object, the signal its own browse
    name, both in snake_case; a repeated pair gets a numeric suffix.
    """
    tags: list[dict[str, str]] = []
    skipped: list[BrowsedNode] = []
    taken: set[tuple[str, str]] = set()
    for node in nodes:
        if not node.is_variable:
            continue
        if not node.stored or "read" not in node.access:
            skipped.append(node)
            continue
        machine = signal_name(node.path[-2]) if len(node.path) > 1 else "plc"
        signal = base = with_unit(signal_name(node.path[-1]), node.unit)
        suffix = 1
        while (machine, signal) in taken:
            suffix += 1
            signal = f"{base}_{suffix}"
        taken.add((machine, signal))
        tags.append({"machine": machine, "signal": signal, "node": node.config_id})
    entry: dict[str, Any] = {"type": "opcua", "name": name, "endpoint": endpoint}
    entry["security"] = security
    if auth:
        entry["auth"] = auth
    entry["tags"] = tags
    return entry, skipped
