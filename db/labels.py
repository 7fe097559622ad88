"""Labels: reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.models import Label
from db.sql import any_id

L = Label.__table__


async def labels_by_workspace(
    session: AsyncSession, workspace_ids: Sequence[int]
) -> dict[int, list[Any]]:
    stmt = (
        select(L)
        .where(any_id(L.c.workspace_id, workspace_ids))
        .order_by(L.c.workspace_id, func.lower(L.c.name), L.c.id)
    )
    labels: dict[int, list[Any]] = {wid: [] for wid in workspace_ids}
    for row in (await session.execute(stmt)).all():
        labels[row.workspace_id].append(row)
    return labels


async def labels_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    stmt = select(L).where(
        any_id(L.c.id, ids), any_id(L.c.workspace_id, principal.readable_workspace_ids)
    )
    return {row.id: row for row in (await session.execute(stmt)).all()}
