"""Workspaces and memberships: reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.lists import counts_by_parent, pages_by_parent
from db.models import Membership, Workspace
from db.pagination import Page, PageArgs, SortKey, count, fetch_page
from db.sql import any_id

W = Workspace.__table__
M = Membership.__table__

WORKSPACE_KEYS = (SortKey("slug", W.c.slug, "str"),)
MEMBER_KEYS = (
    SortKey("joined", M.c.created_at, "datetime"),
    SortKey("user", M.c.user_id, "int"),
)


def _readable(principal: Principal) -> Any:
    return select(W).where(any_id(W.c.id, principal.readable_workspace_ids))


async def workspace_page(session: AsyncSession, principal: Principal, args: PageArgs) -> Page:
    return await fetch_page(session, _readable(principal), WORKSPACE_KEYS, args)


async def workspace_count(session: AsyncSession, principal: Principal) -> int:
    return await count(session, _readable(principal))


async def workspaces_by_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    readable = [i for i in ids if principal.can_read(i)]
    if not readable:
        return {}
    rows = (await session.execute(select(W).where(any_id(W.c.id, readable)))).all()
    return {row.id: row for row in rows}


async def workspace_by_slug(session: AsyncSession, principal: Principal, slug: str) -> Any | None:
    row = (await session.execute(select(W).where(W.c.slug == slug))).first()
    if row is None or not principal.can_read(row.id):
        return None
    return row


async def member_pages(
    session: AsyncSession, workspace_ids: Sequence[int], args: PageArgs
) -> dict[int, Page]:
    return await pages_by_parent(session, select(M), M.c.workspace_id, workspace_ids, MEMBER_KEYS, args)


async def member_counts(session: AsyncSession, workspace_ids: Sequence[int]) -> dict[int, int]:
    return await counts_by_parent(session, select(M), M.c.workspace_id, workspace_ids)
