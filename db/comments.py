"""Comments: reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.lists import counts_by_parent, pages_by_parent
from db.models import Comment, Task
from db.pagination import Page, PageArgs, SortKey
from db.sql import any_id

C = Comment.__table__
T = Task.__table__

# Oldest first, like a conversation.
COMMENT_KEYS = (SortKey("created", C.c.created_at, "datetime"), SortKey("id", C.c.id, "int"))


async def comment_pages(
    session: AsyncSession, task_ids: Sequence[int], args: PageArgs
) -> dict[int, Page]:
    return await pages_by_parent(session, select(C), C.c.task_id, task_ids, COMMENT_KEYS, args)


async def comment_counts(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, int]:
    return await counts_by_parent(session, select(C), C.c.task_id, task_ids)


async def comments_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    stmt = (
        select(C)
        .join(T, T.c.id == C.c.task_id)
        .where(any_id(C.c.id, ids), any_id(T.c.workspace_id, principal.readable_workspace_ids))
    )
    return {row.id: row for row in (await session.execute(stmt)).all()}
