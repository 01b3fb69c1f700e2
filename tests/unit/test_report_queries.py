"""What the callback figures read of the calls: only what the missed calls' index holds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column
from sqlalchemy.sql.util import find_tables
from sqlalchemy.sql.visitors import iterate

from pbx_tracker.reports.callbacks import CALL_LABELS, _percentile_query, _task_facts
from pbx_tracker.reports.dimensions import Dimension, ReportScope, calls_table
from pbx_tracker.reports.period import period_of
from pbx_tracker.reports.settings import ReportRules
from pbx_tracker.store.models import MISSED_CALL_LABELS, CallRow

RULES = ReportRules(
    target_seconds=30,
    unique_days=30,
    model="last_touch",
    sla_minutes=15,
    zone=ZoneInfo("Europe/Moscow"),
)
PERIOD = period_of("2026-11-01", "2026-11-30", RULES.zone)


def _calls_columns(query: Any) -> set[str]:
    return {
        node.name
        for node in iterate(query)
        if isinstance(node, Column) and node.table is calls_table
    }


@pytest.mark.parametrize("model", ["last_touch", "first_touch"])
@pytest.mark.parametrize("dimension", sorted(CALL_LABELS))
def test_callbacks_by_a_call_label_read_what_the_index_holds(
    dimension: Dimension, model: str
) -> None:
    """Callback figures grouped by a call's label (source, number, campaign and so on) read only
    what the missed calls' index holds, so the report stays fast on a large database."""
    scope = ReportScope.of("postgresql", replace(RULES, model=model), PERIOD)
    keys, joined, where = _task_facts([dimension, Dimension.HOUR], scope, managers_only=False)
    read = _calls_columns(_percentile_query(keys, joined, where, scope))
    assert read, "grouped by a call's label, the tasks are joined to their calls"
    assert read <= {"id", "status", *MISSED_CALL_LABELS}


@pytest.mark.parametrize("dimensions", [[Dimension.DAY], [Dimension.MANAGER, Dimension.HOUR]])
def test_callbacks_by_time_or_manager_read_no_calls(dimensions: list[Dimension]) -> None:
    """Callback figures grouped by day, or by manager and hour, do not read the calls table at
    all."""
    scope = ReportScope.of("postgresql", RULES, PERIOD)
    keys, joined, where = _task_facts(dimensions, scope, managers_only=False)
    query = _percentile_query(keys, joined, where, scope)
    assert calls_table not in find_tables(query)


def test_the_index_is_on_missed_calls_with_every_label() -> None:
    """The missed calls' index on PostgreSQL carries every label the callback figures may group
    by."""
    index = next(i for i in CallRow.__table__.indexes if i.name == "ix_calls_missed_labels")  # type: ignore[attr-defined]
    assert [c.name for c in index.columns] == ["id"]
    assert index.dialect_options["postgresql"]["include"] == list(MISSED_CALL_LABELS)
    assert set(MISSED_CALL_LABELS) <= set(calls_table.c.keys())
