"""Per-parent lists and counts: one statement for many parents (DataLoader batches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, bindparam, func
from sqlalchemy.ext.asyncio import AsyncSession

from db import raw
from db.pagination import (
    PARENTS,
    Page,
    PageArgs,
    SortKey,
    Source,
    column_key,
    fetch_page,
    fetch_pages_per_parent,
)
from db.sql import in_ids


async def pages_by_parent(
    session: AsyncSession,
    source: Source,
    parent: ColumnElement[Any],
    parent_ids: Sequence[int],
    keys: Sequence[SortKey],
    args: PageArgs,
    **params: Any,
) -> dict[int, Page]:
    """A page of children for every parent.

    One parent (the common case of a root field) takes the index-friendly LIMIT path; many
    parents share one statement numbered with a window function. `last`/`before` are only
    offered on single-parent lists.
    """
    if len(parent_ids) == 1 or args.last is not None or args.before is not None:
        one = Source(
            ("child", source.key, column_key(parent)),
            lambda: source.build().where(parent == bindparam("tg_parent", type_=BigInteger)),
        )
        pages = {}
        for pid in parent_ids:
            pages[pid] = await fetch_page(session, one, keys, args, tg_parent=pid, **params)
        return pages
    return await fetch_pages_per_parent(
        session, source, parent, parent_ids, keys, args.first, args.after, **params
    )


async def counts_by_parent(
    session: AsyncSession,
    source: Source,
    parent: ColumnElement[Any],
    parent_ids: Sequence[int],
    **params: Any,
) -> dict[int, int]:
    """`count(*)` of `source` per parent; parents without rows count 0."""

    def build() -> Select[Any]:
        return (
            source.build()
            .with_only_columns(parent.label("parent"), func.count().label("n"))
            .where(in_ids(parent, PARENTS))
            .group_by(parent)
            .order_by(None)
        )

    key = ("counts", source.key, column_key(parent))
    counts = dict.fromkeys(parent_ids, 0)
    for row in await raw.rows(session, key, build, **{PARENTS: list(parent_ids)}, **params):
        counts[row["parent"]] = row["n"]
    return counts
