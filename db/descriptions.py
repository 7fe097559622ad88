"""The read side of each node type, described once: the data both read paths are made from.

A `NodeType` says where its rows come from (`source`: a statement whose columns are the row),
which principals may see a row (`visible`), and for each field of the API type, under the
field's Python name, how its value is read:

- `Value`: an SQL expression of the row's columns (and the principal), already in the form the
  response writes it (`db.wire`);
- `One`: one row of another type (or null), `Many`: a plain list of rows, `Listing`: a paged,
  ordered list with cursors and a total (a connection); each with the statement of its rows for
  a parent row.

`db.json_statement` builds from these the one statement that answers a whole query in
PostgreSQL, and `db.read_types` the loaders' batched reads (by id, per parent, pages). Fields
that take arguments name an `Arguments`: how the API's argument values become the field's own
(`convert`, shared with the resolvers), what of them changes the statement's text (`shape`)
and which are parameters (`params`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam

from db import wire
from db.pagination import PageArgs, SortKey
from db.principals import PrincipalSQL
from db.wire import Sql

# The `.c` of a row source: its columns by name.
Columns = Any
# A parameter of the statement, by its name within the field (made unique per field use).
Param = Callable[[str, Any], Sql]


def named_param(name: str, type_: Any) -> Any:
    """A `Param` that keeps the name as it is: for statements that hold one field's
    parameters (the loaders'); the compiled statement prefixes them per field."""
    return bindparam(name, type_=type_)


def _no_shape(args: Any) -> Hashable:
    return None


def _no_params(args: Any) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Arguments:
    """A field's arguments: `convert` takes the API's values as Python keywords (IDs decoded
    where the field expects ids) and raises `InvalidArgument` where the API answers an error."""

    convert: Callable[..., Any]
    shape: Callable[[Any], Hashable] = _no_shape
    params: Callable[[Any], Mapping[str, Any]] = _no_params


@dataclass(frozen=True, slots=True)
class ListArgs:
    """The arguments of a `Listing`: the page, and the rest (filter, order, ...)."""

    page: PageArgs
    rest: Any = None


@dataclass(frozen=True, slots=True)
class Value:
    """A value of the row: `sql` as the database holds it (what the loaders' rows carry), and
    `write`, the `db.wire` format in which the response writes it (None: as it is)."""

    sql: Callable[[Columns, PrincipalSQL], Sql]
    write: Callable[[Sql], Sql] | None = None
    # Carried by the loaders' rows under the field's name (values that need the principal).
    loaded: bool = False

    def json(self, c: Columns, p: PrincipalSQL) -> Sql:
        value = self.sql(c, p)
        return self.write(value) if self.write is not None else value


# The conditions on the target's rows (`target`: its source's columns) for a parent row.
Where = Callable[[Columns, Columns, PrincipalSQL, Any, Param], Sequence[Sql]]
# The target's rows for a parent row, where they are not the target's source filtered.
Rows = Callable[[Columns, PrincipalSQL, Any, Param], Select[Any]]


@dataclass(frozen=True, slots=True)
class One:
    target: str
    where: Where | None = None
    rows: Rows | None = None
    arguments: Arguments | None = None


@dataclass(frozen=True, slots=True)
class Many:
    target: str
    # The order of the list, over the rows' columns.
    order: Callable[[Columns], Sequence[Sql]]
    where: Where | None = None
    rows: Rows | None = None
    arguments: Arguments | None = None
    # When the principal may not read the list of this parent, the resolvers answer (an error).
    refused: Callable[[Columns, PrincipalSQL], Sql] | None = None


# Conditions on a list's rows (`target`: its source's columns) beyond its parent.
Conditions = Callable[[Columns, PrincipalSQL, Any, Param], Sequence[Sql]]


@dataclass(frozen=True, slots=True)
class Listing:
    """A connection: the target's rows whose `parent` column holds the parent's id (all of them
    for a list of the root), that meet `where`; `keys` is their total order. The compiled
    statement and the loaders' batched pages (`db.read_types.listing_pages`) are both made
    from it."""

    target: str
    keys: Callable[[Any], Sequence[SortKey]]
    arguments: Arguments
    parent: Callable[[Columns], Sql] | None = None
    where: Conditions | None = None


@dataclass(frozen=True, slots=True)
class ById:
    """`node(id:)` (or `nodes(ids:)` when `many`): rows of any node type by their ids, each
    visible to the principal or null. The arguments are (type name, id) pairs."""

    many: bool = False


Field = Value | One | Many | Listing | ById


@dataclass(frozen=True, slots=True)
class NodeType:
    name: str
    source: Callable[[], Select[Any]] | None
    fields: Mapping[str, Field] = field(default_factory=dict)
    # Whether the principal may see a row; None: always. Rows it may not see are not read,
    # except with `lookup_only`: then only lookups by id (`node`, `nodes`) skip them, and the
    # loaders' rows carry the rule as `visible` (a comment's author who has left the workspace
    # is still shown as the author).
    visible: Callable[[Columns, PrincipalSQL], Sql] | None = None
    lookup_only: bool = False


def value(column: str, write: Callable[[Sql], Sql] | None = None) -> Value:
    """A column, optionally written through a `db.wire` format."""
    return Value(lambda c, p: c[column], write)


def global_id(type_name: str) -> Value:
    return Value(lambda c, p: c.id, lambda v: wire.global_id_sql(type_name, v))


def timestamp(column: str) -> Value:
    return value(column, wire.timestamp_sql)


def source_of(node: NodeType) -> Select[Any]:
    if node.source is None:
        raise ValueError(f"{node.name} has no rows of its own")
    return node.source()


def related_rows(
    described: One | Many,
    target: NodeType,
    parent: Columns,
    p: PrincipalSQL,
    args: Any,
    param: Param,
) -> Select[Any]:
    """The rows of a relationship for the parent row (`parent`: its columns): what both the
    compiled statement and the loaders' batched reads (`db.read_types.related`) select."""
    if described.rows is not None:
        return described.rows(parent, p, args, param)
    assert described.where is not None
    rows = source_of(target)
    return rows.where(*described.where(rows.selected_columns, parent, p, args, param))


def listed_rows(
    listing: Listing, target: NodeType, p: PrincipalSQL, args: Any, param: Param
) -> Select[Any]:
    """The rows of a list for every parent, before they are taken per parent (`parent`) and
    paged: for the compiled statement and the loaders' pages alike."""
    rows = source_of(target)
    if listing.where is None:
        return rows
    return rows.where(*listing.where(rows.selected_columns, p, args, param))


def page_arguments(rest: Callable[..., Any] | None = None, **kinds: Any) -> Arguments:
    """The arguments of a plain connection: `first`, `after`, `last`, `before`."""

    def convert(
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        **others: Any,
    ) -> ListArgs:
        return ListArgs(PageArgs(first, after, last, before), rest(**others) if rest else None)

    return Arguments(convert, **kinds)


def sort_keys_of(keys: Sequence[SortKey]) -> Callable[[Any], Sequence[SortKey]]:
    return lambda rest: keys
