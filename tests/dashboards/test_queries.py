"""Every dashboard and alert query, macros expanded as Grafana does, against a real InfluxDB
after a short real `shopfloor up`: each must name only what the data model has and return
data of the expected shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import yaml

from core.schema import EVENTS
from tests.dashboards.conftest import FAULT, JAM, LineRun
from tests.dashboards.grafana_queries import (
    ALERT_RULES,
    Query,
    absolute_time_filter,
    alert_queries,
    dashboard_queries,
    expand,
    name_problems,
    series_problems,
)

DASHBOARD_QUERIES = list(dashboard_queries())
ALERT_QUERIES = list(alert_queries())
EPISODE_FIELDS = ("top_signal", "peak_severity", "duration_s")
INFLUX_TYPES = {str: "string", float: "float", int: "integer", bool: "boolean"}
pytestmark = pytest.mark.influxdb


def _id(query: Query) -> str:
    return query.where


@pytest.mark.parametrize("query", DASHBOARD_QUERIES + [q for q, _ in ALERT_QUERIES], ids=_id)
def test_query_names_only_what_the_data_model_has(query: Query) -> None:
    assert name_problems(query) == [], f"{query.where}: {query.text}"


def test_the_name_check_catches_unknown_names() -> None:
    bad = [
        'SELECT last("valu") FROM "telemetry" WHERE $timeFilter',
        'SELECT last("value") FROM "telemetri" WHERE $timeFilter',
        'SELECT last("value") FROM "telemetry" WHERE "machin" = \'x\'',
        'SHOW TAG VALUES FROM "telemetry" WITH KEY = "value"',
        'SELECT last("value") FROM "telemetry" WHERE signal = \'state\'',
    ]
    for text in bad:
        assert name_problems(Query("bad", text)), text


def _values(run: LineRun, statement: str) -> list[str]:
    series = run.query(statement).get("series") or []
    return sorted({row[1] for s in series for row in s["values"]})


@pytest.fixture(scope="session")
def variable_values(line_run: LineRun) -> dict[str, list[str]]:
    """Values of every dashboard variable, from its own query: $machine is the faulted machine
    (it must be among the values), multi-value variables take All."""
    values: dict[str, list[str]] = {}
    for query in DASHBOARD_QUERIES:
        name = query.where.partition("variable $")[2]
        if name and name not in values:
            found = _values(line_run, expand(query, values))
            assert found, f"{query.where} lists nothing"
            values[name] = found
            if name == "machine":
                assert FAULT["machine"] in found
                values[name] = [FAULT["machine"]]
    return values


# The simulated line's PLCs have no text tags (batch ids, recipe names), and its energy meter
# ($machine here: the voltage sag) no PLC alarm: these queries run without error on its data
# and return nothing; test_data_truth.py checks the texts on a timeline that has them,
# test_alarm_panels.py the alarms.
NO_DATA_ON_THE_SIMULATED_LINE = {
    "machine-detail.json: panel 'Latest texts' A",
    "machine-detail.json: panel 'Active alarms' A",
    "machine-detail.json: panel 'Active alarms' B",
    "machine-detail.json: panel 'Alarm journal' A",
}


def _check(run: LineRun, query: Query, values: Mapping[str, Sequence[str]], **kw: str) -> None:
    """Run as Grafana would have when the run ended (${__to} is its end: the latest-value
    queries look back from there, however long after the run this test runs)."""
    text = expand(query, values, to_ms=run.end_ms, **kw)
    expected = ["no data"] if query.where in NO_DATA_ON_THE_SIMULATED_LINE else []
    assert series_problems(text, run.query(text)) == expected, f"{query.where}: {text}"


# Rows only while an episode is open: none after `up` stopped (test_render draws it mid-run).
OPEN_EPISODES = "anomalies.json: panel 'Anomaly episodes in progress' A"


@pytest.mark.parametrize("query", DASHBOARD_QUERIES, ids=_id)
def test_dashboard_query_returns_data(
    query: Query, line_run: LineRun, variable_values: dict[str, list[str]]
) -> None:
    if query.where == OPEN_EPISODES:
        text = expand(query, variable_values, to_ms=line_run.end_ms)
        assert line_run.query(text) == {"statement_id": 0}, text  # no error, no row
        return
    _check(line_run, query, variable_values)
    absolute = absolute_time_filter(line_run.start_ms - 60_000, line_run.end_ms)
    _check(line_run, query, variable_values, time_filter=absolute)


def test_every_repeated_signal_panel_has_data(
    line_run: LineRun, variable_values: dict[str, list[str]]
) -> None:
    """Machine detail repeats its signal panel per value of $signal: each one alone."""
    (panel,) = [q for q in DASHBOARD_QUERIES if "panel '$signal'" in q.where]
    for signal in variable_values["signal"]:
        _check(line_run, panel, {**variable_values, "signal": [signal]})


def _rule_conditions() -> dict[str, tuple[str, float]]:
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    conditions = {}
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        (threshold,) = [d for d in rule["data"] if d["model"].get("type") == "threshold"]
        evaluator = threshold["model"]["conditions"][0]["evaluator"]
        conditions[rule["uid"]] = (evaluator["type"], float(evaluator["params"][0]))
    return conditions


def _firing(run: LineRun, query: Query, lookback_s: int, uid: str) -> dict[str, bool]:
    """Series name -> whether the rule fires for it (reduce last, then the threshold)."""
    text = expand(
        query, {}, time_filter=absolute_time_filter(run.end_ms - lookback_s * 1000, run.end_ms)
    )
    result = run.query(text)
    assert series_problems(text, result) == [], f"{query.where}: {text}"
    kind, limit = _rule_conditions()[uid]
    firing = {}
    for series in result["series"]:
        last = [row[1] for row in series["values"] if row[1] is not None][-1]
        tags = series.get("tags", {})
        name = tags.get("machine") or tags.get("connector") or ""
        assert name not in firing, f"{uid}: two series for {name}: {tags}"
        firing[name] = last > limit if kind == "gt" else last < limit
    return firing


def test_anomaly_rule_fires_for_the_faulted_machine(line_run: LineRun) -> None:
    (query, lookback) = next(q for q in ALERT_QUERIES if "anomaly-episode" in q[0].where)
    firing = _firing(line_run, query, lookback, "shopfloor-anomaly-episode")
    assert firing.get(FAULT["machine"]) is True, firing


def test_connector_rule_is_quiet_while_connectors_deliver(line_run: LineRun) -> None:
    (query, lookback) = next(q for q in ALERT_QUERIES if "connector-stalled" in q[0].where)
    firing = _firing(line_run, query, lookback, "shopfloor-connector-stalled")
    assert firing and not any(firing.values()), firing


def test_episode_events_carry_the_fields_the_episode_tables_show(line_run: LineRun) -> None:
    """The episode tables select top_signal, peak_severity and duration_s: stored with their model
    types, set on every episode event of the run, duration_s only on the closing ones."""
    keys = line_run.query('SHOW FIELD KEYS FROM "events"')["series"][0]["values"]
    stored = {name: kind for name, kind in keys}
    assert {f: stored.get(f) for f in EPISODE_FIELDS} == {
        f: INFLUX_TYPES[EVENTS.fields[f]] for f in EPISODE_FIELDS
    }
    columns = ", ".join(f'"{f}"' for f in ("active", *EPISODE_FIELDS))
    found = line_run.query(f'SELECT {columns} FROM "events" WHERE "kind" = \'anomaly\'')
    rows = [row[1:] for s in found.get("series", []) for row in s["values"]]
    assert sorted({active for active, *_ in rows}) == [False, True], rows
    for active, top_signal, peak_severity, duration_s in rows:
        assert top_signal and isinstance(top_signal, str), rows
        assert isinstance(peak_severity, int | float) and peak_severity > 0, rows
        if active:
            assert duration_s is None, rows
        else:
            assert isinstance(duration_s, int | float) and duration_s >= 0, rows


def test_no_episode_is_left_open_after_up_stops(line_run: LineRun) -> None:
    """`up` ended by --duration closes what is still open: every machine's last episode event
    is a closing one, so "episodes in progress" is empty afterwards; the jam that outlasts the
    run is closed by the shutdown, with its duration."""
    found = line_run.query(
        'SELECT last("active") FROM "events" WHERE "kind" = \'anomaly\' GROUP BY "machine"'
    )
    last = {s["tags"]["machine"]: s["values"][0][1] for s in found.get("series", [])}
    assert JAM["machine"] in last and not any(last.values()), last
    closed = line_run.query(
        'SELECT "text", "duration_s" FROM "events" WHERE "kind" = \'anomaly\''
        f' AND "active" = false AND "machine" = \'{JAM["machine"]}\''
    )
    ((_, text, duration_s),) = closed["series"][0]["values"]
    assert "detection stopped" in text and duration_s > 0, text
