"""Tasks: reads, filtering and ordering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import ColumnElement, Date, cast, func, literal, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.errors import InvalidArgument
from db.lists import counts_by_parent, pages_by_parent
from db.models import Label, Project, Task, TaskLabel, TaskPriority, TaskStatus
from db.pagination import Page, PageArgs, SortKey
from db.sql import any_id, any_str, escape_like

T = Task.__table__
P = Project.__table__
L = Label.__table__
TL = TaskLabel.__table__

TaskOrderField = Literal["CREATED_AT", "UPDATED_AT", "DUE_DATE", "PRIORITY", "POSITION", "NUMBER"]

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

MAX_FILTER_VALUES = 100
MAX_SEARCH_LENGTH = 200


@dataclass(frozen=True, slots=True)
class TaskFilter:
    statuses: Sequence[TaskStatus] | None = None
    priorities: Sequence[TaskPriority] | None = None
    assignee_ids: Sequence[int] | None = None
    unassigned: bool | None = None
    label_ids: Sequence[int] | None = None
    project_ids: Sequence[int] | None = None
    due_before: date | None = None
    due_after: date | None = None
    completed: bool | None = None
    search: str | None = None


def sort_keys(order: Sequence[tuple[TaskOrderField, bool]]) -> list[SortKey]:
    """Sort keys for (field, descending) pairs, with id as the final tie-break."""
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
    return keys


def _conditions(flt: TaskFilter | None) -> list[ColumnElement[bool]]:
    if flt is None:
        return []
    for name in ("statuses", "priorities", "assignee_ids", "label_ids", "project_ids"):
        values = getattr(flt, name)
        if values is not None and len(values) > MAX_FILTER_VALUES:
            raise InvalidArgument(f"A filter list holds at most {MAX_FILTER_VALUES} values.")
    where: list[ColumnElement[bool]] = []
    if flt.statuses is not None:
        where.append(any_str(T.c.status, [s.value for s in flt.statuses]))
    if flt.priorities is not None:
        where.append(T.c.priority.in_([int(p) for p in flt.priorities]))
    if flt.assignee_ids is not None and flt.unassigned:
        where.append(or_(any_id(T.c.assignee_id, flt.assignee_ids), T.c.assignee_id.is_(None)))
    elif flt.assignee_ids is not None:
        where.append(any_id(T.c.assignee_id, flt.assignee_ids))
    elif flt.unassigned is not None:
        where.append(T.c.assignee_id.is_(None) if flt.unassigned else T.c.assignee_id.isnot(None))
    if flt.label_ids:
        wanted = sorted(set(flt.label_ids))
        carrying = (
            select(TL.c.task_id)
            .where(any_id(TL.c.label_id, wanted))
            .group_by(TL.c.task_id)
            .having(func.count() == len(wanted))
        )
        where.append(T.c.id.in_(carrying))
    if flt.project_ids is not None:
        where.append(any_id(T.c.project_id, flt.project_ids))
    if flt.due_before is not None:
        where.append(T.c.due_date < flt.due_before)
    if flt.due_after is not None:
        where.append(T.c.due_date > flt.due_after)
    if flt.completed is not None:
        where.append(T.c.completed_at.isnot(None) if flt.completed else T.c.completed_at.is_(None))
    if flt.search is not None:
        term = flt.search.strip()
        if len(term) > MAX_SEARCH_LENGTH:
            raise InvalidArgument(f"search is limited to {MAX_SEARCH_LENGTH} characters.")
        if term:
            pattern = f"%{escape_like(term)}%"
            where.append(or_(T.c.title.ilike(pattern), T.c.description.ilike(pattern)))
    return where


def _filtered(flt: TaskFilter | None) -> Any:
    return select(T).where(*_conditions(flt))


async def task_pages(
    session: AsyncSession,
    parent: Literal["workspace", "project"],
    parent_ids: Sequence[int],
    flt: TaskFilter | None,
    order: Sequence[tuple[TaskOrderField, bool]],
    args: PageArgs,
) -> dict[int, Page]:
    column = T.c.workspace_id if parent == "workspace" else T.c.project_id
    return await pages_by_parent(
        session, _filtered(flt), column, parent_ids, sort_keys(order), args
    )


async def task_counts(
    session: AsyncSession,
    parent: Literal["workspace", "project"],
    parent_ids: Sequence[int],
    flt: TaskFilter | None,
) -> dict[int, int]:
    column = T.c.workspace_id if parent == "workspace" else T.c.project_id
    return await counts_by_parent(session, _filtered(flt), column, parent_ids)


async def tasks_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    stmt = select(T).where(
        any_id(T.c.id, ids), any_id(T.c.workspace_id, principal.readable_workspace_ids)
    )
    return {row.id: row for row in (await session.execute(stmt)).all()}


_KEY = re.compile(r"^([A-Z][A-Z0-9]{1,9})-([1-9][0-9]{0,8})$")


def parse_key(key: str) -> tuple[str, int] | None:
    match = _KEY.match(key.strip().upper())
    return (match.group(1), int(match.group(2))) if match else None


async def tasks_by_key(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], Any]:
    """Tasks by (workspace id, human key such as "ENG-42"); the caller has checked that it may
    read the workspaces. Malformed keys find nothing."""
    wanted: dict[tuple[int, str, int], tuple[int, str]] = {}
    for workspace_id, key in keys:
        parsed = parse_key(key)
        if parsed is not None:
            wanted[(workspace_id, *parsed)] = (workspace_id, key)
    if not wanted:
        return {}
    stmt = (
        select(T, P.c.key.label("project_key"))
        .join(P, P.c.id == T.c.project_id)
        .where(tuple_(P.c.workspace_id, P.c.key, T.c.number).in_(list(wanted)))
    )
    found = {}
    for row in (await session.execute(stmt)).all():
        found[wanted[(row.workspace_id, row.project_key, row.number)]] = row
    return found


async def labels_by_task(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, list[Any]]:
    stmt = (
        select(TL.c.task_id, L)
        .join(L, L.c.id == TL.c.label_id)
        .where(any_id(TL.c.task_id, task_ids))
        .order_by(TL.c.task_id, func.lower(L.c.name), L.c.id)
    )
    labels: dict[int, list[Any]] = {tid: [] for tid in task_ids}
    for row in (await session.execute(stmt)).all():
        labels[row.task_id].append(row)
    return labels
