"""The connectors file: one YAML file holding every input an integrator configures.

Each entry of `connectors:` is validated by its plugin's own `Config` model; this module only
adds what they share (site, line, unique names) and turns validation errors into messages that
name the file, the line and the field, so that nothing starts half-configured.

A protocol plugin registers here, in PLUGINS, and nowhere else: its package provides `Config`
(the entry's model), `build(config, site=, line=)` (the running input) and `check(config)`
(every tag read once, for `shopfloor check`).
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from yaml.composer import ComposerError

from connectors.check import ConnectorCheck, TagCheck
from connectors.config_paths import context_for
from core.inputs import Input
from core.schema import name_problem

# type -> the plugin's package, imported when a file first uses the type (a Modbus-only file
# never loads the OPC UA stack)
PLUGINS: Mapping[str, str] = {"opcua": "connectors.opcua", "modbus": "connectors.modbus"}
NAME_FIELDS = frozenset({"site", "line", "machine", "signal", "name"})  # each becomes a tag

_log = logging.getLogger(__name__)
Location = tuple[str | int, ...]
_SCALARS = yaml.SafeLoader("")  # constructs scalar nodes; the tree walk is ours, for line numbers
# libyaml's parser where PyYAML has it: a 20,000-tag file parses in a tenth of the time and memory.
# Its events carry libyaml's marks (yaml._yaml.Mark), which PyYAML's nodes and errors take as
# they take its own (its C parser builds them so); types-PyYAML declares them with the
# pure-Python Mark only, hence the `type: ignore[arg-type]` where we pass an event's mark on.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def plugin(kind: str) -> ModuleType:
    """The plugin package of a connector type (a key of PLUGINS)."""
    return importlib.import_module(PLUGINS[kind])


class ConfigError(Exception):
    """A connectors file that cannot be used; the message lists every problem, one per line."""


class Entry(Protocol):
    """A validated entry of the connectors file: an instance of its plugin's `Config` model."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = Field("default", min_length=1)
    line: str = Field("line1", min_length=1)
    connectors: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class ConnectorsConfig:
    """A validated connectors file."""

    path: Path
    site: str
    line: str
    entries: list[Entry]

    def build_inputs(self) -> list[Input]:
        """One running-ready input per entry, in file order."""
        return [
            plugin(entry.type).build(entry, site=self.site, line=self.line)
            for entry in self.entries
        ]

    async def check(self, entries: Iterable[Entry]) -> list[ConnectorCheck]:
        """Every tag of `entries` read once, the endpoints in parallel (a dead one costs one
        timeout). A plugin's bug fails its own connector's tags, never the others' results."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_check_entry(entry)) for entry in entries]
        return [task.result() for task in tasks]


async def _check_entry(entry: Any) -> ConnectorCheck:
    try:
        return await plugin(entry.type).check(entry)
    except Exception as exc:  # a plugin bug: report it on its tags, keep the other results
        _log.debug("check of %s failed", entry.name, exc_info=True)
        problem = f"the check itself failed ({type(exc).__name__}: {exc}); please report this"
        tags = [TagCheck("", "", "", problem=problem)]
        where = getattr(entry, "endpoint", "") or getattr(entry, "url", "")
        return ConnectorCheck(entry.name, where, tags, [])


def load_config(path: str | Path) -> ConnectorsConfig:
    """Read and validate a connectors file; raise ConfigError naming file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the connectors file: {exc.strerror}") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> ConnectorsConfig:
    """Validate connectors-file text; `path` names the file in messages, and relative file paths
    inside it (certificates, keys, password files) are taken from its folder."""
    data, lines = _compose(text, path)
    problems = list(_bad_names(data, path, lines, ()))
    try:
        top = _FileModel.model_validate(data)
    except ValidationError as exc:
        problems.append(_format(exc, path, lines, (), _FileModel))
        raise ConfigError("\n".join(problems)) from None
    entries: list[Entry] = []
    for index, raw in enumerate(top.connectors):
        entry = _validate_entry(raw, path, lines, ("connectors", index), problems)
        if entry is not None:
            entries.append(entry)
    problems.extend(_duplicate_names(top.connectors, path, lines))
    if problems:
        raise ConfigError("\n".join(problems))
    return ConnectorsConfig(path=path, site=top.site, line=top.line, entries=entries)


def _validate_entry(
    raw: dict[str, Any],
    path: Path,
    lines: _Lines,
    where: Location,
    problems: list[str],
) -> Entry | None:
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in PLUGINS:
        known = ", ".join(sorted(PLUGINS))
        problems.append(
            f"{_at(path, lines, (*where, 'type'))}: {_dotted((*where, 'type'))}: "
            f"unknown connector type {kind!r}; use one of: {known}"
        )
        return None
    config = plugin(kind).Config
    try:
        return config.model_validate(raw, context=context_for(path))
    except ValidationError as exc:
        problems.append(_format(exc, path, lines, where, config))
        return None


def _bad_names(node: Any, path: Path, lines: _Lines, loc: Location) -> Iterable[str]:
    """Every name (site, line, machine, signal, connector name) that the historian could not
    store as it is: each one becomes a tag, and InfluxDB would refuse it on every write."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        where = (*loc, key)
        problem = name_problem(value) if key in NAME_FIELDS and isinstance(value, str) else None
        if problem is not None:
            yield (
                f"{_at(path, lines, where)}: {_dotted(where)}: the name {value!r} {problem}, "
                "which the historian cannot store; remove it"
            )
        yield from _bad_names(value, path, lines, where)


def _duplicate_names(raw: list[dict[str, Any]], path: Path, lines: _Lines) -> Iterable[str]:
    seen: set[object] = set()
    for index, entry in enumerate(raw):
        name = entry.get("name")
        if name in seen:
            where = ("connectors", index, "name")
            yield (
                f"{_at(path, lines, where)}: {_dotted(where)}: connector name {name!r} is used "
                "twice; give every connector its own name (it tags the `connector` measurement)"
            )
        seen.add(name)


def _format(
    exc: ValidationError,
    path: Path,
    lines: _Lines,
    where: Location,
    model: type[BaseModel],
) -> str:
    messages = []
    for error in exc.errors(include_url=False):
        loc = (*where, *error["loc"])
        messages.append(f"{_at(path, lines, loc)}: {_dotted(loc)}: {_explain(error, model)}")
    return "\n".join(messages)


def _explain(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "missing":
        return f"required field is missing; add `{loc[-1]}:`"
    if kind in _UNKNOWN_FIELD:
        allowed = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
        return f"unknown field; {hint}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith(("int_", "float_", "string_", "literal")):
        return f"{message} (got {error.get('input')!r})"
    return message


# how pydantic names a field the schema does not have: in a model, in a (pydantic) dataclass
_UNKNOWN_FIELD = ("extra_forbidden", "unexpected_keyword_argument")


def _fields_at(model: type[BaseModel], loc: Location) -> list[str]:
    """The field names of the (nested) model that `loc` points into, for spelling hints."""
    current: Any = model
    for part in loc:
        fields = _fields_of(current)
        if isinstance(part, int) or fields is None:
            continue
        field = fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return sorted(_fields_of(current) or ())


def _fields_of(kind: Any) -> Mapping[str, FieldInfo] | None:
    """The fields of a model or a pydantic dataclass (both keep them in `__pydantic_fields__`;
    None for anything else)."""
    return getattr(kind, "__pydantic_fields__", None) if isinstance(kind, type) else None


def _model_in(annotation: Any) -> Any:
    """The model or dataclass inside list[Model] / Model | None, or the annotation itself."""
    if _fields_of(annotation) is not None:
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if _fields_of(found) is not None:
            return found
    return annotation


def _dotted(loc: Location) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _at(path: Path, lines: _Lines, loc: Location) -> str:
    """`file:line` of the deepest part of `loc` that exists in the file."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return f"{path}:{line}"
    return str(path)


class _Lines:
    """The line number of every mapping key and sequence item of a file, found when a message
    first needs one (by parsing the file again): kept while a plant-scale file is validated,
    a location tuple and a dict entry per key cost ~1 kB a tag, most of the load's peak."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._found: dict[Location, int] | None = None

    def get(self, loc: Location) -> int | None:
        if self._found is None:
            self._found = {}
            _document(yaml.parse(self._text, Loader=_LOADER), self._found)
        return self._found.get(loc)


_NO_DOCUMENT = object()  # what `_document` returns for a stream without one


def _compose(text: str, path: Path) -> tuple[Any, _Lines]:
    """Parse YAML, with the line numbers of its keys and items found when a message needs one.

    The data is built straight from the parser's events: a node tree would hold two marks per
    node, about 2.5 kB a tag, at the peak of a 20,000-tag file's load.
    """
    try:
        data = _document(yaml.parse(text, Loader=_LOADER), None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if data is _NO_DOCUMENT:
        raise ConfigError(f"{path}: the file is empty; see connectors/*/sample.yaml for examples")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the file must be a mapping with a `connectors:` list")
    return data, _Lines(text)


def _document(events: Iterator[yaml.Event], lines: dict[Location, int] | None) -> Any:
    """The one document of a stream (`_NO_DOCUMENT` if the stream is empty); the line of each
    key and item goes into `lines` if given."""
    next(events)  # StreamStartEvent
    start = next(events)
    if isinstance(start, yaml.StreamEndEvent):
        return _NO_DOCUMENT
    first = next(events)
    if lines is not None:
        lines[()] = _line(first)
    data = _build(events, first, (), lines, {})
    next(events)  # DocumentEndEvent
    after = next(events)
    if not isinstance(after, yaml.StreamEndEvent):
        raise ComposerError(
            "expected a single document in the stream",
            start.start_mark,  # type: ignore[arg-type]
            "but found another document",
            after.start_mark,  # type: ignore[arg-type]
        )
    return data


def _build(
    events: Iterator[yaml.Event],
    event: yaml.Event,
    loc: Location,
    lines: dict[Location, int] | None,
    anchors: dict[str, Any],
) -> Any:
    """The value that starts with `event`, the events of its content read from `events`.
    Strings are interned: a plant-scale file repeats its keys, types, tables and often its
    signal names thousands of times, and a tag keeps its signal name."""
    assert isinstance(event, yaml.NodeEvent)  # the parser starts every value with one
    if isinstance(event, yaml.AliasEvent):
        if event.anchor not in anchors:
            message = f"found undefined alias {event.anchor!r}"
            raise ComposerError(None, None, message, event.start_mark)  # type: ignore[arg-type]
        return anchors[event.anchor]
    value: Any
    if isinstance(event, yaml.ScalarEvent):
        value = _scalar(event)
        if isinstance(value, str):
            value = sys.intern(value)
    elif isinstance(event, yaml.SequenceStartEvent):
        value = []
        while not isinstance(item := next(events), yaml.SequenceEndEvent):
            where = loc
            if lines is not None:
                where = (*loc, len(value))
                lines[where] = _line(item)
            value.append(_build(events, item, where, lines, anchors))
    else:  # a MappingStartEvent
        value = {}
        while not isinstance(key_event := next(events), yaml.MappingEndEvent):
            key = _build(events, key_event, loc, None, anchors)
            where = loc
            if lines is not None:
                where = (*loc, key)
                lines[where] = _line(key_event)
            value[key] = _build(events, next(events), where, lines, anchors)
    if event.anchor is not None:
        anchors[event.anchor] = value
    return value


def _line(event: yaml.Event) -> int:
    """The line (1-based) an event starts on; the parser marks every event."""
    assert event.start_mark is not None
    return event.start_mark.line + 1


def _scalar(event: yaml.ScalarEvent) -> Any:
    """A scalar as the safe loader reads it (int, float, bool, null, str, timestamp)."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = _SCALARS.resolve(yaml.ScalarNode, event.value, event.implicit)
    start, end = event.start_mark, event.end_mark
    node = yaml.ScalarNode(tag, event.value, start, end, event.style)  # type: ignore[arg-type]
    constructors = _SCALARS.yaml_constructors
    construct = constructors[tag] if tag in constructors else constructors[None]
    return construct(_SCALARS, node)
