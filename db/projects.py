"""Projects: reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.lists import counts_by_parent, pages_by_parent
from db.models import Project, Task, TaskStatus
from db.pagination import Page, PageArgs, SortKey
from db.sql import any_id

P = Project.__table__
T = Task.__table__

PROJECT_KEYS = (SortKey("key", P.c.key, "str"),)


def _listed(include_archived: bool) -> Any:
    stmt = select(P)
    return stmt if include_archived else stmt.where(P.c.archived_at.is_(None))


async def projects_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    stmt = select(P).where(any_id(P.c.id, ids), any_id(P.c.workspace_id, principal.readable_workspace_ids))
    return {row.id: row for row in (await session.execute(stmt)).all()}


async def projects_by_key(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], Any]:
    """Projects by (workspace id, key); the caller has checked that it may read the workspaces."""
    stmt = select(P).where(tuple_(P.c.workspace_id, P.c.key).in_([tuple(k) for k in keys]))
    return {(row.workspace_id, row.key): row for row in (await session.execute(stmt)).all()}


async def project_pages(
    session: AsyncSession, workspace_ids: Sequence[int], include_archived: bool, args: PageArgs
) -> dict[int, Page]:
    return await pages_by_parent(
        session, _listed(include_archived), P.c.workspace_id, workspace_ids, PROJECT_KEYS, args
    )


async def project_counts(
    session: AsyncSession, workspace_ids: Sequence[int], include_archived: bool
) -> dict[int, int]:
    return await counts_by_parent(session, _listed(include_archived), P.c.workspace_id, workspace_ids)


async def task_counts(
    session: AsyncSession, project_ids: Sequence[int]
) -> dict[int, dict[TaskStatus, int]]:
    stmt = (
        select(T.c.project_id, T.c.status, func.count().label("n"))
        .where(any_id(T.c.project_id, project_ids))
        .group_by(T.c.project_id, T.c.status)
    )
    counts: dict[int, dict[TaskStatus, int]] = {
        pid: dict.fromkeys(TaskStatus, 0) for pid in project_ids
    }
    for row in (await session.execute(stmt)).all():
        counts[row.project_id][TaskStatus(row.status)] = row.n
    return counts
