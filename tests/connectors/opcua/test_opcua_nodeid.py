"""Node id and browse path parsing: every standard form, and helpful rejections."""

from __future__ import annotations

import uuid

import pytest
from asyncua import ua

from connectors.opcua.nodeid import (
    ROOT_FOLDER,
    BrowsePath,
    IdKind,
    NodeRef,
    PathElement,
    parse_node,
)
from connectors.opcua.resolve import to_ua_browse_path, to_ua_nodeid

GUID = "09087e75-8e5e-499b-954f-f2a9603db28a"

VALID = [
    ("ns=2;i=1234", NodeRef(IdKind.NUMERIC, 1234, 2)),
    ("i=85", NodeRef(IdKind.NUMERIC, 85, 0)),
    ("ns=0;i=4294967295", NodeRef(IdKind.NUMERIC, 4294967295, 0)),
    ("ns=2;s=line1.filler.speed", NodeRef(IdKind.STRING, "line1.filler.speed", 2)),
    ('ns=3;s="DB_Line"."Temp"', NodeRef(IdKind.STRING, '"DB_Line"."Temp"', 3)),  # Siemens S7-1500
    ("ns=4;s=MAIN.fbLine;x=1", NodeRef(IdKind.STRING, "MAIN.fbLine;x=1", 4)),  # ';' is part of s=
    ("ns=2;s= lead", NodeRef(IdKind.STRING, " lead", 2)),  # verbatim, inner spaces kept
    (f"ns=2;g={GUID}", NodeRef(IdKind.GUID, uuid.UUID(GUID), 2)),
    (f"ns=2;g={GUID.upper()}", NodeRef(IdKind.GUID, uuid.UUID(GUID), 2)),
    ("ns=2;b=AWxhYmVs", NodeRef(IdKind.OPAQUE, b"\x01label", 2)),
    ("nsu=urn:shopfloor:plc_sim;s=line1.capper.torque_nm",
     NodeRef(IdKind.STRING, "line1.capper.torque_nm", 0, "urn:shopfloor:plc_sim")),
    ("nsu=http://vendor.com/UA/;i=7", NodeRef(IdKind.NUMERIC, 7, 0, "http://vendor.com/UA/")),
    ("  ns=2;i=5  ", NodeRef(IdKind.NUMERIC, 5, 2)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[v[0] for v in VALID])
def test_node_id_forms(text: str, expected: NodeRef) -> None:
    assert parse_node(text) == expected


PATHS = [
    ("/Objects/2:line1/2:capper",
     (PathElement(0, "Objects"), PathElement(2, "line1"), PathElement(2, "capper"))),
    ("/0:Objects/3:DataBlocksGlobal/3:DB_Line",
     (PathElement(0, "Objects"), PathElement(3, "DataBlocksGlobal"), PathElement(3, "DB_Line"))),
    ("/2:Motor:1", (PathElement(2, "Motor:1"),)),  # only the first ':' splits
]  # fmt: skip


@pytest.mark.parametrize(("text", "elements"), PATHS, ids=[p[0] for p in PATHS])
def test_browse_paths_start_at_root(text: str, elements: tuple[PathElement, ...]) -> None:
    assert parse_node(text) == BrowsePath(ROOT_FOLDER, elements)


def test_browse_path_from_a_start_node() -> None:
    parsed = parse_node("/2:capper/2:speed", browse_from="ns=2;s=line1")
    assert parsed == BrowsePath(
        NodeRef(IdKind.STRING, "line1", 2), (PathElement(2, "capper"), PathElement(2, "speed"))
    )


INVALID = [
    ("", "node is empty"),
    ("   ", "node is empty"),
    ("ns=x;i=1", "namespace index 'x' is not an integer"),
    ("ns=-1;i=1", "namespace index '-1' is not an integer 0..65535"),
    ("ns=70000;i=1", "namespace index '70000'"),
    ("ns=2;i=abc", "numeric identifier 'abc'"),
    ("ns=2;i=-5", "numeric identifier '-5'"),
    ("ns=2;i=4294967296", "numeric identifier '4294967296'"),
    ("ns=2;i=", "numeric identifier ''"),
    ("ns=2;s=", "string identifier is empty"),
    ("ns=2;g=not-a-guid", "GUID identifier 'not-a-guid'"),
    ("ns=2;b=***", "opaque identifier '***'"),
    ("ns=2;b=", "opaque identifier ''"),
    ("ns=2;x=1", "unknown identifier type 'x'"),
    ("ns=2", "has no identifier"),
    ("nsu=urn:a", "has no identifier"),
    ("nsu=;s=Tag", "namespace URI is empty"),
    ("ns=2;nsu=urn:a;s=Tag", "gives the namespace twice"),
    ("ns=2;i=5;extra", "unexpected text 'extra'"),
    ("line1.temp", "part 'line1.temp' of 'line1.temp' is not key=value"),
    ("/", "has no elements"),
    ("/Objects//2:line1", "has an empty name"),
    ("/Objects/2:", "has an empty name"),
    ("/Objects/x:line1", "has namespace 'x'"),
    ("/Objects/70000:line1", "has namespace '70000'"),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[i[0] or "<empty>" for i in INVALID])
def test_malformed_nodes_say_what_and_how_to_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_node(text)
    assert message in str(caught.value)
    assert any(word in str(caught.value) for word in ("write", "use", "add", "remove", "separate"))


def test_browse_from_needs_a_path() -> None:
    with pytest.raises(ValueError, match="browse_from only applies to browse paths"):
        parse_node("ns=2;i=5", browse_from="i=85")


def test_browse_from_must_be_a_node_id() -> None:
    with pytest.raises(ValueError, match="numeric identifier 'zz'"):
        parse_node("/2:a", browse_from="ns=2;i=zz")


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[v[0] for v in VALID])
def test_conversion_to_asyncua_matches_its_own_parser(text: str, expected: NodeRef) -> None:
    """Our parse + conversion agrees with asyncua's parser on every form both understand."""
    namespaces = ["http://opcfoundation.org/UA/", "urn:shopfloor:plc_sim", "http://vendor.com/UA/"]
    ours = to_ua_nodeid(parse_node(text), namespaces)
    theirs = ua.NodeId.from_string(text.strip())
    if expected.namespace_uri is not None:
        assert ours.NamespaceIndex == namespaces.index(expected.namespace_uri)
        assert ours.Identifier == theirs.Identifier
    else:
        assert ours == theirs
        assert ours.NodeIdType in (theirs.NodeIdType, ua.NodeIdType.Numeric)


def test_unknown_namespace_uri_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="'urn:nope' is not in the server's NamespaceArray"):
        to_ua_nodeid(parse_node("nsu=urn:nope;i=1"), ["http://opcfoundation.org/UA/"])


def test_browse_path_follows_hierarchical_references() -> None:
    path = parse_node("/Objects/2:line1")
    assert isinstance(path, BrowsePath)
    converted = to_ua_browse_path(ua.NodeId(84), path)
    names = [
        (e.TargetName.NamespaceIndex, e.TargetName.Name) for e in converted.RelativePath.Elements
    ]
    assert names == [(0, "Objects"), (2, "line1")]
    element = converted.RelativePath.Elements[0]
    assert element.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HierarchicalReferences)
    assert (element.IsInverse, element.IncludeSubtypes) == (False, True)
