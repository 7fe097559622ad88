"""Cursor (keyset) pagination.

A cursor holds the sort-key values of a row plus a fingerprint of the ordering it was made
for, so that pages stay stable while rows are inserted, and a cursor reused with another
ordering is refused instead of silently returning the wrong rows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import InvalidArgument
from db.sql import any_id

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
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    cursors: list[str]
    has_next: bool
    has_previous: bool


def _fingerprint(keys: Sequence[SortKey]) -> str:
    return ",".join(f"{k.name}:{'d' if k.descending else 'a'}" for k in keys)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _decode_value(raw: Any, kind: KeyKind) -> Any:
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == "float" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind == "str" and isinstance(raw, str):
        return raw
    if kind == "datetime" and isinstance(raw, str):
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed
    if kind == "date" and isinstance(raw, str):
        return date.fromisoformat(raw)
    raise ValueError(f"expected {kind}")


def encode_cursor(keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    payload = orjson.dumps([_fingerprint(keys), [_encode_value(v) for v in values]])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, keys: Sequence[SortKey]) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fingerprint, raw_values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if fingerprint != _fingerprint(keys):
            raise InvalidArgument("The cursor belongs to a different ordering of this list.")
        if not isinstance(raw_values, list) or len(raw_values) != len(keys):
            raise ValueError("wrong arity")
        return [_decode_value(v, k.kind) for v, k in zip(raw_values, keys, strict=True)]
    except InvalidArgument:
        raise
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError, UnicodeError):
        raise InvalidArgument(f"Invalid cursor: {cursor[:40]!r}.") from None


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


def _after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
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


def _order(keys: Sequence[SortKey]) -> list[ColumnElement[Any]]:
    return [k.expr.desc() if k.descending else k.expr.asc() for k in keys]


def _plan(keys: Sequence[SortKey], args: PageArgs) -> tuple[int, bool, list[SortKey], Any]:
    size, backwards = checked_size(args.first, args.last)
    if args.after is not None and args.before is not None:
        raise InvalidArgument("Pass either `after` or `before`, not both.")
    cursor = args.before if backwards else args.after
    if not backwards and args.before is not None:
        raise InvalidArgument("`before` goes with `last`.")
    if backwards and args.after is not None:
        raise InvalidArgument("`after` goes with `first`.")
    walk = [k.reversed() for k in keys] if backwards else list(keys)
    bound = _after(walk, decode_cursor(cursor, keys)) if cursor is not None else None
    return size, backwards, walk, bound


def _with_keys(stmt: Select[Any], keys: Sequence[SortKey]) -> Select[Any]:
    return stmt.add_columns(*(k.expr.label(f"_k{i}") for i, k in enumerate(keys)))


def _cursor_of(row: Any, keys: Sequence[SortKey]) -> str:
    mapping = row._mapping
    return encode_cursor(keys, [mapping[f"_k{i}"] for i in range(len(keys))])


async def fetch_page(
    session: AsyncSession, stmt: Select[Any], keys: Sequence[SortKey], args: PageArgs
) -> Page:
    """One page of `stmt` ordered by `keys` (the last key must make the order total)."""
    size, backwards, walk, bound = _plan(keys, args)
    if size == 0:
        return Page([], [], False, False)
    query = _with_keys(stmt, keys).order_by(*_order(walk)).limit(size + 1)
    if bound is not None:
        query = query.where(bound)
    rows = list((await session.execute(query)).all())
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    cursors = [_cursor_of(row, keys) for row in rows]
    started = (args.before if backwards else args.after) is not None
    if backwards:
        return Page(rows, cursors, has_next=started, has_previous=more)
    return Page(rows, cursors, has_next=more, has_previous=started)


async def fetch_pages_per_parent(
    session: AsyncSession,
    stmt: Select[Any],
    parent: ColumnElement[Any],
    parent_ids: Sequence[int],
    keys: Sequence[SortKey],
    first: int | None,
    after: str | None,
) -> dict[int, Page]:
    """The first page of a child list for many parents in one statement (window function)."""
    size, _ = checked_size(first, None)
    if size == 0:
        return {pid: Page([], [], False, after is not None) for pid in parent_ids}
    query = _with_keys(stmt, keys).add_columns(
        parent.label("tg_parent"),
        func.row_number().over(partition_by=parent, order_by=_order(keys)).label("tg_rn"),
    )
    query = query.where(any_id(parent, parent_ids))
    if after is not None:
        query = query.where(_after(keys, decode_cursor(after, keys)))
    ranked = query.subquery()
    outer = (
        select(ranked)
        .where(ranked.c.tg_rn <= size + 1)
        .order_by(ranked.c.tg_parent, ranked.c.tg_rn)
    )
    grouped: dict[int, list[Any]] = {pid: [] for pid in parent_ids}
    for row in (await session.execute(outer)).all():
        grouped[row.tg_parent].append(row)
    pages = {}
    for pid, rows in grouped.items():
        more = len(rows) > size
        rows = rows[:size]
        pages[pid] = Page(
            rows, [_cursor_of(r, keys) for r in rows], has_next=more, has_previous=after is not None
        )
    return pages


async def count(session: AsyncSession, stmt: Select[Any]) -> int:
    query = select(func.count()).select_from(stmt.order_by(None).subquery())
    return int((await session.execute(query)).scalar_one())
