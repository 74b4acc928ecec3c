"""Every InfluxQL query Grafana would run for the Shopfloor dashboards and alert rules, with
its macros expanded the way Grafana's InfluxDB datasource expands them, and a check of the
names it uses against the data model (core/schema.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.schema import MEASUREMENTS
from dashboards.build import render

ALERT_RULES = Path(__file__).parents[2] / "dashboards" / "provisioning" / "alerting" / "rules.yaml"
DEFAULT_INTERVAL = "1s"  # what Grafana computes for 15 minutes on a wide panel (min 1 ms steps)

# Bare words an InfluxQL query of ours may hold; anything else must be a quoted identifier.
KEYWORDS = {
    "select", "from", "where", "and", "or", "as", "group", "by", "time", "fill", "none",
    "previous", "null", "order", "desc", "asc", "limit", "show", "tag", "values", "with", "key",
    "true", "false", "now",
}  # fmt: skip
FUNCTIONS = {
    "last", "first", "mean", "max", "min", "count", "spread", "sum",
    "non_negative_derivative", "non_negative_difference", "cumulative_sum", "floor",
}  # fmt: skip
MODELS: dict[str, dict[str, Any]] = {name: json.loads(text) for name, text in render().items()}


@dataclass(frozen=True)
class Query:
    """One query as written in a dashboard or rule, and where it is."""

    where: str  # e.g. "line-overview.json: panel 'Machine states' A"
    text: str
    interval: str = DEFAULT_INTERVAL
    variables: tuple[str, ...] = ()  # the dashboard's variable names, for expansion
    multi: frozenset[str] = field(default_factory=frozenset)  # multi-value variables


def dashboard_queries() -> Iterator[Query]:
    """Panel targets, variable queries and annotation queries of every generated dashboard."""
    for name, model in MODELS.items():
        variables = model["templating"]["list"]
        names = tuple(v["name"] for v in variables)
        multi = frozenset(v["name"] for v in variables if v.get("multi"))
        for variable in variables:
            yield Query(f"{name}: variable ${variable['name']}", variable["query"], variables=names)
        for item in model["annotations"]["list"]:
            query = item["target"]["query"]
            yield Query(f"{name}: annotation {item['name']!r}", query, variables=names)
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                yield Query(
                    f"{name}: panel {panel['title']!r} {target['refId']}",
                    target["query"],
                    panel.get("interval") or DEFAULT_INTERVAL,
                    names,
                    multi,
                )


def alert_queries() -> Iterator[tuple[Query, int]]:
    """(query, seconds it looks back) of every alert rule's datasource query."""
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            for item in rule["data"]:
                if item["datasourceUid"] != "__expr__":
                    where = f"rules.yaml: {rule['uid']} {item['refId']}"
                    yield Query(where, item["model"]["query"]), item["relativeTimeRange"]["from"]


def regex_value(values: Sequence[str], variable: str, multi: frozenset[str]) -> str:
    """A variable's value inside /.../ as Grafana's InfluxDB datasource formats it: a
    single-value variable as is, a multi-value one regex-escaped and joined as (a|b)."""
    if variable not in multi:
        (value,) = values
        return value
    escaped = [re.escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(
    query: Query,
    values: Mapping[str, Sequence[str]],
    *,
    time_filter: str = "time >= now() - 15m",
    to_ms: int | None = None,
) -> str:
    """The query as Grafana sends it: $timeFilter, ${__to} (the end of the range: now unless
    given), $__interval / $interval and $variables."""
    text = query.text.replace("$timeFilter", time_filter)
    text = text.replace("${__to}", str(to_ms if to_ms is not None else int(time.time() * 1000)))
    text = text.replace("$__interval", query.interval).replace("$interval", query.interval)
    for name in sorted(query.variables, key=len, reverse=True):
        if f"${name}" in text:
            text = text.replace(f"${name}", regex_value(values[name], name, query.multi))
    leftover = re.findall(r"\$\w+", text)
    assert not leftover, f"{query.where}: macros Grafana would not expand: {leftover}"
    return text


def absolute_time_filter(start_ms: int, end_ms: int) -> str:
    """$timeFilter for an absolute range (what alert rules and a zoomed panel send)."""
    return f"time >= {start_ms}ms and time <= {end_ms}ms"


def grouped_tags(text: str) -> list[str]:
    """The tag keys after GROUP BY (not time(...))."""
    found = re.search(r"GROUP BY (.*?)(?: fill\(| ORDER | LIMIT |$)", text)
    return re.findall(r'"([^"]+)"', found.group(1)) if found else []


def name_problems(query: Query) -> list[str]:
    """Names in the query that the data model does not have, and bare words that are neither
    keywords nor functions (identifiers must be quoted to be checked)."""
    text = query.text
    measurement = re.search(r'FROM "([^"]+)"', text)
    if measurement is None:
        return ['no FROM "measurement"']
    model = MEASUREMENTS.get(measurement.group(1))
    if model is None:
        return [f"measurement {measurement.group(1)!r} is not in the data model"]
    problems = []
    key = re.search(r'WITH KEY = "([^"]+)"', text)
    if key and key.group(1) not in model.tags:
        problems.append(f"{model.name} has no tag {key.group(1)!r}")
    stripped = re.sub(r"(=~|!~)\s*/(?:\\.|[^/])*/", r"\1 ", text)  # regex literals
    stripped = re.sub(r"'(?:\\.|[^'])*'", " ", stripped)  # string literals
    aliases = set(re.findall(r'AS "([^"]+)"', stripped))
    known = {model.name, *model.tags, *model.fields, *aliases}
    for ident in re.findall(r'"([^"]+)"', stripped):
        if ident not in known:
            problems.append(f"{model.name} has no tag or field {ident!r}")
    bare = re.sub(r'"[^"]*"', " ", stripped)
    bare = re.sub(r"\$\{?\w+\}?", " ", bare)
    for word in re.findall(r"[A-Za-z_]\w*", bare):
        if word.lower() not in KEYWORDS | FUNCTIONS and not re.fullmatch(r"\d*(ms|[smhdw])", word):
            problems.append(f"unquoted word {word!r} (quote identifiers so they can be checked)")
    return problems


def series_problems(query: str, result: Mapping[str, Any]) -> list[str]:
    """Why an answer is not of the expected shape: an error, no series, a column that is null
    in every row (a field nothing writes), a GROUP BY tag missing from the series."""
    if "error" in result:
        return [f"error: {result['error']}"]
    series = result.get("series") or []
    if not series or not any(s.get("values") for s in series):
        return ["no data"]
    problems = []
    columns = series[0]["columns"]
    for index, column in enumerate(columns):
        if column == "time":
            continue
        if all(row[index] is None for s in series for row in s.get("values", [])):
            problems.append(f"column {column!r} is null in every row")
    for tag in grouped_tags(query):
        if not query.startswith("SHOW") and any(tag not in s.get("tags", {}) for s in series):
            problems.append(f"series without the GROUP BY tag {tag!r}")
    return problems
