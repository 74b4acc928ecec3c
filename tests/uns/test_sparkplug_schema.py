"""The classes uns.sparkplug_schema declares for the type checker have exactly the fields of the
messages it builds at import time from the wire contract."""

from __future__ import annotations

import ast
import inspect

import pytest

from uns import sparkplug_schema


def _declared() -> dict[str, list[str]]:
    """Class -> its fields (annotations and properties) in the `if TYPE_CHECKING:` block."""
    tree = ast.parse(inspect.getsource(sparkplug_schema))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    classes: dict[str, list[str]] = {}
    for node in block.body:
        if isinstance(node, ast.ClassDef):
            fields: list[str] = []
            init: list[str] = []
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    fields.append(item.target.id)
                elif isinstance(item, ast.FunctionDef) and item.name != "__init__":
                    fields.append(item.name)
                elif isinstance(item, ast.FunctionDef):
                    init = [arg.arg for arg in item.args.kwonlyargs]
            classes[node.name] = sorted(fields)
            assert sorted(init) == sorted(fields), f"{node.name}.__init__ takes other fields"
    return classes


def test_every_message_is_declared():
    assert sorted(_declared()) == sorted(sparkplug_schema._MESSAGES)


@pytest.mark.parametrize("message", sorted(sparkplug_schema._MESSAGES))
def test_declared_fields_are_the_contracts(message):
    built = sparkplug_schema._classes[f"{sparkplug_schema._PACKAGE}.{message}"]
    assert _declared()[message] == sorted(built.DESCRIPTOR.fields_by_name)
