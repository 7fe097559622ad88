"""Cursor (keyset) pagination.

A cursor holds the sort-key values of a row plus a fingerprint of the ordering it was made
for, so that pages stay stable while rows are inserted, and a cursor reused with another
ordering is refused instead of silently returning the wrong rows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from db import prepared, wire
from db.errors import InvalidArgument
from db.sql import in_ids

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

KeyKind = Literal["int", "float", "datetime", "date", "str"]


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    expr: ColumnElement[Any]
    kind: KeyKind
    descending: bool = False

    def reversed(self) -> SortKey:
        return SortKey(self.name, self.expr, self.kind, not self.descending)


@dataclass(frozen=True, slots=True)
class Source:
    """The base statement of a list. `build` makes it; `key` says what it depends on, so that
    the statements derived from it are built and compiled once (`db.prepared`). Values that vary
    per call are `bindparam`s, given as keyword parameters when the list is fetched."""

    key: Hashable
    build: Callable[[], Select[Any]]


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    # The sort keys the rows' `_k<i>` columns hold; a row's cursor is encoded when asked for
    # (a client reading only `nodes` and `endCursor` needs one cursor, not one per row).
    keys: Sequence[SortKey]
    has_next: bool
    has_previous: bool

    def cursor(self, index: int) -> str:
        return _cursor_of(self.rows[index], self.keys)

    @property
    def cursors(self) -> list[str]:
        return [self.cursor(i) for i in range(len(self.rows))]


def _fingerprint(keys: Sequence[SortKey]) -> str:
    return wire.fingerprint(keys)


def encode_cursor(keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    return wire.cursor(keys, values)


def decode_cursor(cursor: str, keys: Sequence[SortKey]) -> list[Any]:
    return wire.decode_cursor(cursor, keys)


def checked_size(first: int | None, last: int | None) -> tuple[int, bool]:
    """The page size and whether the page is taken from the end (`last`)."""
    if first is not None and last is not None:
        raise InvalidArgument("Pass either `first` or `last`, not both.")
    size, backwards = (last, True) if last is not None else (first, False)
    if size is None:
        return DEFAULT_PAGE_SIZE, backwards
    if size < 0:
        raise InvalidArgument("Page size must not be negative.")
    if size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"Page size must be at most {MAX_PAGE_SIZE}; got {size}.")
    return size, backwards


def after_condition(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order given by `keys`."""
    if all(not k.descending for k in keys) or all(k.descending for k in keys):
        # A row comparison lets PostgreSQL walk a matching index.
        left = tuple_(*(k.expr for k in keys))
        right = tuple_(*values)
        return left < right if keys[0].descending else left > right
    clauses = []
    for i, key in enumerate(keys):
        equal = [keys[j].expr == values[j] for j in range(i)]
        step = key.expr < values[i] if key.descending else key.expr > values[i]
        clauses.append(and_(*equal, step))
    return or_(*clauses)


def _after_cursor(keys: Sequence[SortKey]) -> ColumnElement[bool]:
    """`_after` with the cursor's values as parameters `tg_c0`, `tg_c1`, ..."""
    return after_condition(
        keys, [bindparam(f"tg_c{i}", type_=k.expr.type) for i, k in enumerate(keys)]
    )


def _cursor_params(values: Sequence[Any] | None) -> dict[str, Any]:
    return {} if values is None else {f"tg_c{i}": v for i, v in enumerate(values)}


def ordering(keys: Sequence[SortKey]) -> list[ColumnElement[Any]]:
    return [k.expr.desc() if k.descending else k.expr.asc() for k in keys]


def plan_page(
    keys: Sequence[SortKey], args: PageArgs
) -> tuple[int, bool, list[SortKey], list[Any] | None]:
    size, backwards = checked_size(args.first, args.last)
    if args.after is not None and args.before is not None:
        raise InvalidArgument("Pass either `after` or `before`, not both.")
    cursor = args.before if backwards else args.after
    if not backwards and args.before is not None:
        raise InvalidArgument("`before` goes with `last`.")
    if backwards and args.after is not None:
        raise InvalidArgument("`after` goes with `first`.")
    walk = [k.reversed() for k in keys] if backwards else list(keys)
    values = decode_cursor(cursor, keys) if cursor is not None else None
    return size, backwards, walk, values


def _with_keys(stmt: Select[Any], keys: Sequence[SortKey]) -> Select[Any]:
    return stmt.add_columns(*(k.expr.label(f"_k{i}") for i, k in enumerate(keys)))


def _cursor_of(row: Any, keys: Sequence[SortKey]) -> str:
    return encode_cursor(keys, [row[f"_k{i}"] for i in range(len(keys))])


_LIMIT = "tg_limit"


async def fetch_page(
    session: AsyncSession, source: Source, keys: Sequence[SortKey], args: PageArgs, **params: Any
) -> Page:
    """One page of `source` ordered by `keys` (the last key must make the order total)."""
    size, backwards, walk, values = plan_page(keys, args)
    if size == 0:
        # No rows, but the same page info as a page of rows: the given cursor's side has more.
        started = values is not None
        return Page(
            [], keys, has_next=started and backwards, has_previous=started and not backwards
        )

    def build() -> Select[Any]:
        query = (
            _with_keys(source.build(), keys)
            .order_by(*ordering(walk))
            .limit(bindparam(_LIMIT, type_=Integer))
        )
        return query.where(_after_cursor(walk)) if values is not None else query

    key = ("page", source.key, _fingerprint(walk), values is not None)
    rows = await prepared.rows(
        session, key, build, **params, **_cursor_params(values), **{_LIMIT: size + 1}
    )
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    started = (args.before if backwards else args.after) is not None
    if backwards:
        return Page(rows, keys, has_next=started, has_previous=more)
    return Page(rows, keys, has_next=more, has_previous=started)


# The parameter that holds the parents' ids in per-parent statements.
PARENTS = "tg_parents"


async def fetch_pages_per_parent(
    session: AsyncSession,
    source: Source,
    parent: ColumnElement[Any],
    parent_ids: Sequence[int],
    keys: Sequence[SortKey],
    first: int | None,
    after: str | None,
    **params: Any,
) -> dict[int, Page]:
    """The first page of a child list for many parents in one statement (window function)."""
    size, _ = checked_size(first, None)
    values = decode_cursor(after, keys) if after is not None else None
    if size == 0:
        return {pid: Page([], keys, False, after is not None) for pid in parent_ids}

    def build() -> Select[Any]:
        query = _with_keys(source.build(), keys).add_columns(
            parent.label("tg_parent"),
            func.row_number().over(partition_by=parent, order_by=ordering(keys)).label("tg_rn"),
        )
        query = query.where(in_ids(parent, PARENTS))
        if values is not None:
            query = query.where(_after_cursor(keys))
        ranked = query.subquery()
        return (
            select(ranked)
            .where(ranked.c.tg_rn <= bindparam(_LIMIT, type_=Integer))
            .order_by(ranked.c.tg_parent, ranked.c.tg_rn)
        )

    key = ("pages", source.key, column_key(parent), _fingerprint(keys), values is not None)
    grouped: dict[int, list[Any]] = {pid: [] for pid in parent_ids}
    found = await prepared.rows(
        session,
        key,
        build,
        **params,
        **_cursor_params(values),
        **{PARENTS: list(parent_ids), _LIMIT: size + 1},
    )
    for row in found:
        grouped[row["tg_parent"]].append(row)
    pages = {}
    for pid, rows in grouped.items():
        more = len(rows) > size
        rows = rows[:size]
        pages[pid] = Page(rows, keys, has_next=more, has_previous=after is not None)
    return pages


def column_key(column: ColumnElement[Any]) -> tuple[str, str]:
    """A column as part of a shape key (SQLAlchemy columns overload `==`)."""
    return (column.table.name, column.name)  # type: ignore[attr-defined]


async def count(session: AsyncSession, source: Source, **params: Any) -> int:
    def build() -> Select[Any]:
        return select(func.count()).select_from(source.build().order_by(None).subquery())

    return int((await prepared.rows(session, ("count", source.key), build, **params))[0][0])


# Per-parent lists and counts: one statement for many parents (DataLoader batches).


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
    for row in await prepared.rows(session, key, build, **{PARENTS: list(parent_ids)}, **params):
        counts[row["parent"]] = row["n"]
    return counts
