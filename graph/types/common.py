"""Shared GraphQL building blocks: the Node interface, enums, connections."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import asyncpg
import strawberry

from db import models
from db.pagination import Page
from db.read_types import TYPES
from graph.argument_conversion import db_value
from graph.context import context_of

Role = strawberry.enum(models.Role, name="Role")
TaskStatus = strawberry.enum(models.TaskStatus, name="TaskStatus")
TaskPriority = strawberry.enum(models.TaskPriority, name="TaskPriority")
ApiScope = strawberry.enum(
    models.ApiScope,
    name="ApiScope",
    description="What an API key may do.",
)
ActivityKind = strawberry.enum(models.ActivityKind, name="ActivityKind")


@strawberry.interface(
    description="An object with a globally unique, opaque ID (Relay Global Object Identification)."
)
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


T = TypeVar("T")


def columns(row: Any) -> Mapping[str, Any]:
    """A row's columns by name, whether it came from `db.prepared` (an asyncpg record), from a
    SQLAlchemy statement, or was assembled as a dict."""
    if isinstance(row, (asyncpg.Record, dict)):
        return row  # type: ignore[return-value]
    return row._mapping  # type: ignore[no-any-return]


def fill(obj: Any, **values: Any) -> Any:
    """Set a Strawberry object's attributes directly: building pages of objects from rows,
    the dataclass constructor's argument handling costs more than the rest together."""
    obj.__dict__.update(values)
    return obj


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    nodes: list[T]
    _page: strawberry.Private[Page]
    _total: strawberry.Private[Callable[[], Awaitable[int]]]

    # Edges and cursors are built only for queries that select them.
    @strawberry.field
    def edges(self) -> list[Edge[T]]:
        page = self._page
        return [Edge(cursor=page.cursor(i), node=n) for i, n in enumerate(self.nodes)]

    @strawberry.field
    def page_info(self) -> PageInfo:
        page = self._page
        last = len(page.rows) - 1
        return PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=page.cursor(0) if last >= 0 else None,
            end_cursor=page.cursor(last) if last >= 0 else None,
        )

    @strawberry.field(description="Number of items in the whole list, across all pages.")
    async def total_count(self) -> int:
        return await self._total()


def connection(
    page: Page, build: Callable[[Any], T], total: Callable[[], Awaitable[int]]
) -> Connection[T]:
    return Connection(nodes=[build(row) for row in page.rows], _page=page, _total=total)


def ids_of(values: Sequence[str] | None, expected: str, argument: str) -> list[int] | None:
    from graph.ids import db_id_of

    if values is None:
        return None
    return [db_id_of(v, expected, argument=argument) for v in values]


async def related(info: Any, type_name: str, field: str, parent_id: int, **given: Any) -> Any:
    """The row (or None) or rows of the relationship `type_name.field` of a parent, read as its
    description says (db/read_types.py), its arguments converted as the compiled path
    converts them."""
    described = TYPES[type_name].fields[field]
    arguments = described.arguments  # type: ignore[union-attr]
    args = arguments.convert(**{k: db_value(v) for k, v in given.items()}) if arguments else None
    return await context_of(info).loaders.related(type_name, field).load((parent_id, args))


async def listing(
    info: Any,
    type_name: str,
    field: str,
    parent_id: int,
    build: Callable[[Any], T],
    **given: Any,
) -> Connection[T]:
    """The connection `type_name.field` of a parent, read as its description says
    (db/read_types.py), its arguments converted as the compiled path converts them."""
    described = TYPES[type_name].fields[field]
    args = described.arguments.convert(**{k: db_value(v) for k, v in given.items()})  # type: ignore[union-attr]
    loaders = context_of(info).loaders
    page = await loaders.pages(type_name, field, args).load(parent_id)
    return connection(page, build, lambda: loaders.counts(type_name, field, args).load(parent_id))
