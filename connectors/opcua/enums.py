"""The names of enumeration values, read from the server: a tag whose DataType is an
enumeration is stored with its code in `value` and its name in `text` (docs/data-model.md).

A variable's DataType attribute names its data type node; an enumeration's data type node has
an `EnumStrings` property (LocalizedText[], the name of code i at index i) or an `EnumValues`
property (EnumValueType[]: code and display name, for codes that are not 0, 1, 2, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from asyncua import Client, ua

Names = Mapping[int, str]  # enumeration code -> name
_LAST_BUILT_IN = 25  # ns=0;i=1..25: the built-in types (Boolean .. DiagnosticInfo): no names
_ENUMERATION_PROPERTIES = ("0:EnumStrings", "0:EnumValues")


async def enum_names(
    client: Client, items: Sequence[tuple[int, ua.NodeId]], *, timeout_s: float, batch: int
) -> dict[int, Names]:
    """Per tag index, the names of its enumeration's values (tags of other types left out)."""
    datatypes: dict[int, ua.NodeId] = {}
    for start in range(0, len(items), batch):
        part = items[start : start + batch]
        async with asyncio.timeout(timeout_s):
            answers = await client.uaclient.read_attributes(
                [nodeid for _, nodeid in part], ua.AttributeIds.DataType
            )
        for (index, _), answer in zip(part, answers, strict=True):
            datatype = answer.Value.Value if answer.Value is not None else None
            if isinstance(datatype, ua.NodeId):
                datatypes[index] = datatype
    names = await enum_names_of(client, list(set(datatypes.values())), timeout_s=timeout_s)
    return {index: names[datatype] for index, datatype in datatypes.items() if datatype in names}


async def enum_names_of(
    client: Client, datatypes: Sequence[ua.NodeId], *, timeout_s: float
) -> dict[ua.NodeId, Names]:
    """The value names of those data types that are enumerations."""
    found = {}
    for datatype in datatypes:
        if isinstance(datatype, ua.NodeId) and not _built_in(datatype):
            names = await _names(client, datatype, timeout_s)
            if names is not None:
                found[datatype] = names
    return found


def _built_in(datatype: ua.NodeId) -> bool:
    identifier = datatype.Identifier
    return (
        datatype.NamespaceIndex == 0
        and isinstance(identifier, int)
        and identifier <= _LAST_BUILT_IN
    )


async def _names(client: Client, datatype: ua.NodeId, timeout_s: float) -> Names | None:
    """The EnumStrings or EnumValues of a data type node; None if it has neither."""
    node = client.get_node(datatype)
    for prop in _ENUMERATION_PROPERTIES:
        try:
            async with asyncio.timeout(timeout_s):
                child = await node.get_child(prop)
                value = await child.read_value()
        except ua.UaStatusCodeError:
            continue  # BadNoMatch: not this property
        if prop.endswith("EnumStrings"):
            return {i: text.Text or "" for i, text in enumerate(value)}
        return {int(item.Value): item.DisplayName.Text or "" for item in value}
    return None
