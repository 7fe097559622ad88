"""The activity history of tasks: reads."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import raw
from db.access import Principal
from db.lists import counts_by_parent, pages_by_parent
from db.models import Activity, ActivityKind
from db.pagination import Page, PageArgs, SortKey, Source
from db.sql import in_ids

A = Activity.__table__

# Newest first, like a feed.
ACTIVITY_KEYS = (
    SortKey("created", A.c.created_at, "datetime", descending=True),
    SortKey("id", A.c.id, "int", descending=True),
)
_ALL = Source("activities", lambda: select(A))


async def activity_pages(
    session: AsyncSession, task_ids: Sequence[int], args: PageArgs
) -> dict[int, Page]:
    return await pages_by_parent(session, _ALL, A.c.task_id, task_ids, ACTIVITY_KEYS, args)


async def activity_counts(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, int]:
    return await counts_by_parent(session, _ALL, A.c.task_id, task_ids)


async def activities_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    return await raw.by_id(
        session,
        "activities_by_ids",
        lambda: select(A).where(in_ids(A.c.id, "ids"), in_ids(A.c.workspace_id, "readable")),
        ids=list(ids),
        readable=principal.readable_workspace_ids,
    )


def change(field: str, before: object, after: object) -> dict[str, str | None]:
    """One entry of `activities.changes`; values are kept as strings (or null)."""
    return {"field": field, "from": _text(before), "to": _text(after)}


def _text(value: object) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    if isinstance(value, enum.Enum):
        return str(value.name)
    return str(value)


async def record(
    session: AsyncSession,
    principal: Principal,
    *,
    workspace_id: int,
    project_id: int,
    task_id: int,
    task_key: str,
    kind: ActivityKind,
    changes: Sequence[dict[str, str | None]] = (),
) -> None:
    """Write the history entry of a task change, in the caller's transaction.

    This is the one place every task change passes through; live updates will hook in here.
    """
    await session.execute(
        insert(A).values(
            workspace_id=workspace_id,
            project_id=project_id,
            task_id=task_id,
            task_key=task_key,
            kind=kind.value,
            actor_user_id=principal.user_id,
            actor_api_key_id=principal.api_key_id,
            changes=list(changes),
        )
    )


async def record_for(
    session: AsyncSession,
    principal: Principal,
    task: Any,
    task_key: str,
    kind: ActivityKind,
    changes: Sequence[dict[str, str | None]] = (),
) -> None:
    """`record` for a task row (anything with `id`, `workspace_id` and `project_id`)."""
    await record(
        session,
        principal,
        workspace_id=task.workspace_id,
        project_id=task.project_id,
        task_id=task.id,
        task_key=task_key,
        kind=kind,
        changes=changes,
    )
