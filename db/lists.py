"""Per-parent lists and counts: one statement for many parents (DataLoader batches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func
from sqlalchemy.ext.asyncio import AsyncSession

from db.pagination import Page, PageArgs, SortKey, fetch_page, fetch_pages_per_parent
from db.sql import any_id


async def pages_by_parent(
    session: AsyncSession,
    stmt: Select[Any],
    parent: ColumnElement[Any],
    parent_ids: Sequence[int],
    keys: Sequence[SortKey],
    args: PageArgs,
) -> dict[int, Page]:
    """A page of children for every parent.

    One parent (the common case of a root field) takes the index-friendly LIMIT path; many
    parents share one statement numbered with a window function. `last`/`before` are only
    offered on single-parent lists.
    """
    if len(parent_ids) == 1 or args.last is not None or args.before is not None:
        pages = {}
        for pid in parent_ids:
            pages[pid] = await fetch_page(session, stmt.where(parent == pid), keys, args)
        return pages
    return await fetch_pages_per_parent(
        session, stmt, parent, parent_ids, keys, args.first, args.after
    )


async def counts_by_parent(
    session: AsyncSession, stmt: Select[Any], parent: ColumnElement[Any], parent_ids: Sequence[int]
) -> dict[int, int]:
    """`count(*)` of `stmt` per parent; parents without rows count 0."""
    query = (
        stmt.with_only_columns(parent.label("parent"), func.count().label("n"))
        .where(any_id(parent, parent_ids))
        .group_by(parent)
        .order_by(None)
    )
    counts = dict.fromkeys(parent_ids, 0)
    for row in (await session.execute(query)).all():
        counts[row.parent] = row.n
    return counts
