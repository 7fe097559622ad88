"""The activity history of tasks: reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.lists import counts_by_parent, pages_by_parent
from db.models import Activity
from db.pagination import Page, PageArgs, SortKey
from db.sql import any_id

A = Activity.__table__

# Newest first, like a feed.
ACTIVITY_KEYS = (
    SortKey("created", A.c.created_at, "datetime", descending=True),
    SortKey("id", A.c.id, "int", descending=True),
)


async def activity_pages(
    session: AsyncSession, task_ids: Sequence[int], args: PageArgs
) -> dict[int, Page]:
    return await pages_by_parent(session, select(A), A.c.task_id, task_ids, ACTIVITY_KEYS, args)


async def activity_counts(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, int]:
    return await counts_by_parent(session, select(A), A.c.task_id, task_ids)


async def activities_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    stmt = select(A).where(
        any_id(A.c.id, ids), any_id(A.c.workspace_id, principal.readable_workspace_ids)
    )
    return {row.id: row for row in (await session.execute(stmt)).all()}
