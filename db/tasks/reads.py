"""Task reads: orders and sort keys, the task row, the arguments of task lists, task keys."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    cast,
    func,
    literal,
    select,
)

from db.errors import InvalidArgument
from db.pagination import SortKey
from db.tasks.filters import (
    TaskFilter,
    check_filter,
)
from db.tasks.tables import P, T

TaskOrderField = Literal["CREATED_AT", "UPDATED_AT", "DUE_DATE", "PRIORITY", "POSITION", "NUMBER"]
# (field, descending) pairs.
Order = tuple[tuple[TaskOrderField, bool], ...]

# Tasks without a due date sort after every dated task (ascending), as PostgreSQL does with
# NULLS LAST, but as a real value so that keyset cursors can compare it.
_DUE = func.coalesce(T.c.due_date, cast(literal("infinity"), Date))

_ORDER_EXPRS: dict[str, tuple[ColumnElement[Any], Any]] = {
    "CREATED_AT": (T.c.created_at, "datetime"),
    "UPDATED_AT": (T.c.updated_at, "datetime"),
    "DUE_DATE": (_DUE, "date"),
    "PRIORITY": (T.c.priority, "int"),
    "POSITION": (T.c.position, "float"),
    "NUMBER": (T.c.number, "int"),
}


def sort_keys(order: Sequence[tuple[TaskOrderField, bool]]) -> tuple[SortKey, ...]:
    """Sort keys for (field, descending) pairs, with id as the final tie-break."""
    return _sort_keys(tuple(order))


# Every request of a task list asks for them, usually for one of a few orders.
@lru_cache(maxsize=1024)
def _sort_keys(order: tuple[tuple[TaskOrderField, bool], ...]) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    seen: set[str] = set()
    for field, descending in order:
        if field in seen:
            raise InvalidArgument(f"orderBy names {field} more than once.")
        seen.add(field)
        expr, kind = _ORDER_EXPRS[field]
        keys.append(SortKey(field, expr, kind, descending))
    tie_break_descending = keys[-1].descending if keys else False
    keys.append(SortKey("ID", T.c.id, "int", tie_break_descending))
    return tuple(keys)


def task_rows() -> Select[Any]:
    """A task's row: its columns, and its project's key for the task key ("ENG-42")."""
    # An outer join on the project's primary key: PostgreSQL leaves it out where nothing of the
    # project is used (a count), and joins once rather than looking the key up per row.
    joined = T.outerjoin(P, P.c.id == T.c.project_id)
    return select(T, P.c.key.label("project_key")).select_from(joined)


# Workspace-wide lists show the newest tasks first; a board lists them in their manual order.
WORKSPACE_TASK_ORDER: tuple[tuple[TaskOrderField, bool], ...] = (("CREATED_AT", True),)
PROJECT_TASK_ORDER: tuple[tuple[TaskOrderField, bool], ...] = (("POSITION", False),)
MAX_ORDER_KEYS = 6


def task_list_arguments(
    default_order: tuple[tuple[TaskOrderField, bool], ...],
    filter: TaskFilter | None = None,
    order_by: Sequence[tuple[TaskOrderField, bool]] | None = None,
) -> tuple[TaskFilter | None, tuple[tuple[TaskOrderField, bool], ...]]:
    """A task list's filter and order (field, descending), checked as the API checks them."""
    if order_by is not None and len(order_by) > MAX_ORDER_KEYS:
        raise InvalidArgument(f"orderBy takes at most {MAX_ORDER_KEYS} keys.")
    order = tuple(order_by) if order_by else default_order
    sort_keys(order)
    if filter is not None:
        check_filter(filter)
    return filter, order


_KEY = re.compile(r"^([A-Z][A-Z0-9]{1,9})-([1-9][0-9]{0,8})$")


def parse_key(key: str) -> tuple[str, int] | None:
    match = _KEY.match(key.strip().upper())
    return (match.group(1), int(match.group(2))) if match else None
