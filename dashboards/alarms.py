"""Panels on PLC alarms: the `events` of kind `alarm` that connectors write, one point per
event of a condition (raised, acknowledged, cleared, confirmed, re-sent by a refresh).

An alarm's identity is a field (`condition_id`), not a tag, and InfluxQL groups by tags only,
so "the newest event of each condition" is Grafana's groupBy transformation over the events of
ALARM_LOOKBACK_S (rows arrive oldest first, so its `last` is the newest event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from core.schema import ALARM_LOOKBACK_S, EventKind
from dashboards.events import machine_filter
from dashboards.influxql import EVENTS_Q, SITE_LINE, InfluxQL
from dashboards.panels import (
    LEVEL_COLORS,
    LEVEL_MAPPINGS,
    MERGE,
    organize,
    props,
    sort_by,
    stat,
    table,
    value_mappings,
)

ALARMS = f"\"kind\" = '{EventKind.ALARM}'"
# An alarm's identity: several sources may have a condition of the same name.
CONDITION = ("machine", "source", "condition", "condition_id")
ACTIVE_MAPPINGS = value_mappings(("true", "ACTIVE", "red"), ("false", "cleared", "green"))
YES_NO_MAPPINGS = value_mappings(("true", "yes", "green"), ("false", "no", "orange"))
RENAMED = {"text": "message", "severity_level": "level"}
# Column widths in px: every column but the message has one, so the message gets the rest.
WIDTHS = {
    **{"level": 90, "active": 80, "acked": 70, "confirmed": 95, "at": 170, "since": 170},
    **{"machine": 140, "source": 140, "condition": 210, "comment": 180},
}


def _where(machine_regex: str) -> str:
    return f"{ALARMS} AND {SITE_LINE}{machine_filter(machine_regex)}"


def _select(fields: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in fields)


def _on_ref(ref: str, step: model.DataTransformerConfig) -> model.DataTransformerConfig:
    step.filter_val = model.MatcherConfig(id_val="byRefId", options=ref)
    return step


def _group_by(keys: Sequence[str], last: Sequence[str]) -> model.DataTransformerConfig:
    """One row per distinct `keys`, with the last value of each of `last` as "<name> (last)"."""
    fields: dict[str, object] = {key: {"operation": "groupby", "aggregations": []} for key in keys}
    fields.update({name: {"operation": "aggregate", "aggregations": ["last"]} for name in last})
    return model.DataTransformerConfig(id_val="groupBy", options={"fields": fields})


def _only_active() -> model.DataTransformerConfig:
    equal_true = {"id": "equal", "options": {"value": True}}
    return model.DataTransformerConfig(
        id_val="filterByValue",
        options={
            "type": "include",
            "match": "all",
            "filters": [{"fieldName": "active", "config": equal_true}],
        },
    )


def _shown(columns: Sequence[str], machine_regex: str) -> tuple[list[str], list[str]]:
    """(columns in order, columns hidden): the machine column on the whole line's panels, not
    on one machine's."""
    hidden = ["machine"] if machine_regex else []
    return [c for c in columns if c not in hidden], hidden


def _styled(panel: table_panel.Panel, states: Mapping[str, list[model.ValueMapping]]) -> None:
    """The level as a cell in its colour, states as coloured words, widths per column, the
    message wrapped."""
    background = {"type": cm.TableCellDisplayMode.COLOR_BACKGROUND}
    panel.override_by_name("level", props(mappings=LEVEL_MAPPINGS, custom__cellOptions=background))
    for name, mappings in states.items():
        colored = {"type": cm.TableCellDisplayMode.COLOR_TEXT}
        panel.override_by_name(name, props(mappings=mappings, custom__cellOptions=colored))
    for name, px in WIDTHS.items():
        panel.override_by_name(name, props(custom__width=px))
    # a long message (a clear's "...: back to normal") wraps rather than being cut
    wrapped = {"type": cm.TableCellDisplayMode.AUTO, "wrapText": True}
    panel.override_by_name("message", props(custom__cellOptions=wrapped))


SPAN = f"time > ${{__to}}ms - {ALARM_LOOKBACK_S}s AND time <= ${{__to}}ms"
STATE = ("text", "active", "acked", "severity_level")


def _newest(machine_regex: str) -> tuple[InfluxQL, list[model.DataTransformerConfig]]:
    """Query A, every alarm event of the look-back, and the steps that keep each condition's
    newest event, its fields named as shown (even as themselves: a join appends the frame's
    name to the fields that have none)."""
    query = (
        f"SELECT {_select([*CONDITION, *STATE])} FROM {EVENTS_Q}"
        f" WHERE {_where(machine_regex)} AND {SPAN}"
    )
    names = {key: key for key in CONDITION} | {
        f"{name} (last)": RENAMED.get(name, name) for name in STATE
    }
    steps = [_group_by(CONDITION, STATE), organize(rename=names)]
    return InfluxQL(query, table=True), [_on_ref("A", step) for step in steps]


def active_alarms(machine_regex: str = "") -> table_panel.Panel:
    """One row per condition whose newest event up to the end of the range is active: its
    level, where, what, since when (its newest raise: an active, unacknowledged event) and
    whether someone acknowledged it. Query A is every alarm event of the look-back, grouped to
    each condition's newest; B the raises, grouped to each condition's newest; A is joined
    with B on condition_id, then filtered to the active rows (B's rows alone have none)."""
    events, newest = _newest(machine_regex)
    raises = (
        f'SELECT "condition_id", "active" FROM {EVENTS_Q} WHERE {_where(machine_regex)}'
        f' AND "active" = true AND "acked" = false AND {SPAN}'
    )
    order, hidden = _shown(
        ["level", "machine", "source", "condition", "message", "since", "acked"], machine_regex
    )
    transformations = [
        *newest,
        _on_ref("B", _group_by(["condition_id"], ["Time"])),
        _on_ref("B", organize(rename={"Time (last)": "since"})),
        model.DataTransformerConfig(
            id_val="joinByField", options={"byField": "condition_id", "mode": "outerTabular"}
        ),
        _only_active(),
        organize(order=order, hide=["active", "condition_id", *hidden]),
        sort_by("since"),
    ]
    whose = "this machine's" if machine_regex else "the line's"
    panel = (
        table(
            "Active alarms",
            f"The PLC alarms of {whose} machines that are active at the end of the time range, "
            "newest first: level (from the PLC's severity: low, high, critical), source, "
            "condition, message, since when (the latest raise) and whether someone "
            "acknowledged them. An alarm whose last event is older than "
            f"{ALARM_LOOKBACK_S // 86400} days is left out; a reconnecting connector writes "
            "every active alarm again (ConditionRefresh).",
            events,
            transformations,
            sort="since",
        )
        .with_target(InfluxQL(raises, ref="B", table=True))
        .override_by_name("since", props(unit="dateTimeAsIso"))
    )
    _styled(panel, {"acked": YES_NO_MAPPINGS})
    return panel


def active_counts() -> stat_panel.Panel:
    """How many alarms are active per level, a tile per level in its colour (none: no tile):
    the newest event per condition as in active_alarms, the active ones counted per level."""
    events, newest = _newest("")
    count = model.DataTransformerConfig(
        id_val="groupBy",
        options={
            "fields": {
                "level": {"operation": "groupby", "aggregations": []},
                "condition_id": {"operation": "aggregate", "aggregations": ["count"]},
            }
        },
    )
    # the level as a word, so that it names its tile (a stat names a row by its strings)
    as_text = model.DataTransformerConfig(
        id_val="convertFieldType",
        options={"conversions": [{"targetField": "level", "destinationType": "string"}]},
    )
    panel = (
        stat(
            "Active alarms per level",
            "How many PLC alarms of the line are active at the end of the time range, per level "
            "(critical red, high orange, low yellow); the table beside lists them.",
            events,
            no_value="none active",
        )
        .transformations([*newest, _only_active(), count, as_text, sort_by("level")])
        .reduce_options(common.ReduceDataOptions().values(True).calcs([]).fields("/ \\(count\\)$/"))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .decimals(0)
        .override_by_name("level", props(mappings=LEVEL_MAPPINGS))
    )
    for level, color in LEVEL_COLORS.items():
        fixed = {"mode": "fixed", "fixedColor": color}
        panel.override_by_name(level.name.lower(), props(color=fixed))
    return panel


def alarm_journal(machine_regex: str = "") -> table_panel.Panel:
    """Every alarm event in the time range, newest first: each row a state the PLC reported
    (raised, acknowledged, cleared, confirmed), so the rows of one condition are its
    transitions."""
    fields = ("source", "condition", "text", "active", "acked", "confirmed", "severity_level")
    query = (
        f"SELECT {_select([*fields, 'comment'])} FROM {EVENTS_Q} WHERE {_where(machine_regex)}"
        ' AND $timeFilter GROUP BY "machine"'
    )
    order, hidden = _shown(
        ["Time", "severity_level", "machine", "source", "condition", "active", "acked",
         "confirmed", "text", "comment"],
        machine_regex,
    )  # fmt: skip
    panel = table(
        "Alarm journal",
        "Every PLC alarm event in the time range, newest first: one row per state the PLC "
        "reported (raised, acknowledged with its comment, cleared, confirmed), so the rows of "
        "one condition are its history. A reconnecting connector's refresh writes an event "
        "again: it overwrites the stored one, never doubles it.",
        InfluxQL(query, table=True),
        [
            MERGE,
            sort_by("Time"),
            organize(order=order, rename={**RENAMED, "Time": "at"}, hide=hidden),
        ],
        sort="at",
    )
    _styled(
        panel, {"active": ACTIVE_MAPPINGS, "acked": YES_NO_MAPPINGS, "confirmed": YES_NO_MAPPINGS}
    )
    return panel
