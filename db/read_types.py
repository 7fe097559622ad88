"""The read description of every API type (`db.descriptions`), by the API's type name, and
of the root: what the one-statement read path (`db.json_statement`) is built from, and the
loaders' reads made from the same descriptions (rows by id, of relationships and values per
parent, pages and counts of lists). Each type's own description is in its domain module."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    Text,
    any_,
    bindparam,
    column,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from db import prepared
from db.accounts import USER
from db.activities import ACTIVITY, FIELD_CHANGE, SUBSCRIPTION, TASK_EVENT
from db.api_keys import API_KEY
from db.comments import COMMENT
from db.descriptions import (
    Arguments,
    ById,
    ListArgs,
    Listing,
    Many,
    NodeType,
    One,
    Param,
    Value,
    listed_rows,
    named_param,
    page_arguments,
    related_rows,
    sort_keys_of,
    source_of,
)
from db.labels import LABEL
from db.pagination import Page, Source, count, counts_by_parent, fetch_page, pages_by_parent
from db.principals import PRINCIPAL_PARAMS, Principal, principal_params
from db.projects import PROJECT, TASK_COUNTS
from db.sql import ids_param, in_ids
from db.tasks import TASK
from db.workspaces import MEMBERSHIP, WORKSPACE, WORKSPACE_KEYS


def _slug(w: Any, parent: Any, p: Any, slug: str, param: Any) -> list[Any]:
    return [w.slug == param("slug", Text), w.id == any_(p.readable)]


QUERY = NodeType(
    "Query",
    None,
    {
        # Null for anonymous requests and API keys, whose `me` is no user id.
        "me": One("User", lambda u, parent, p, args, param: [u.id == p.me]),
        "workspaces": Listing(
            "Workspace",
            sort_keys_of(WORKSPACE_KEYS),
            page_arguments(),
            where=lambda w, p, args, param: [w.id == any_(p.readable)],
        ),
        "workspace": One(
            "Workspace",
            _slug,
            arguments=Arguments(convert=lambda slug: slug, params=lambda slug: {"slug": slug}),
        ),
        "node": ById(),
        "nodes": ById(many=True),
    },
)

TYPES: dict[str, NodeType] = {
    node.name: node
    for node in (
        QUERY,
        SUBSCRIPTION,
        TASK_EVENT,
        USER,
        WORKSPACE,
        MEMBERSHIP,
        PROJECT,
        TASK_COUNTS,
        TASK,
        LABEL,
        COMMENT,
        ACTIVITY,
        FIELD_CHANGE,
        API_KEY,
    )
}


# The loaders' rows by id --------------------------------------------------------------------


def _loaded_columns(node: NodeType, c: Any) -> list[Any]:
    """The columns of the loaders' rows of `node` over its source's columns `c`: the source's,
    with the values the description has them carry (`Value.loaded`) in their place."""
    loaded = {n: v for n, v in node.fields.items() if isinstance(v, Value) and v.loaded}
    columns: list[Any] = [column for column in c if column.name not in loaded]
    columns += [v.sql(c, PRINCIPAL_PARAMS).label(n) for n, v in loaded.items()]
    return columns


def _by_ids(node: NodeType) -> Select[Any]:
    """Rows of `node` by id (`:ids`), visible to the principal (`principal_params`): the
    source's columns, and the values the loaders' rows carry (`Value.loaded`)."""
    x = source_of(node).subquery()
    columns = _loaded_columns(node, x.c)
    where = [in_ids(x.c.id, "ids")]
    if node.visible is not None:
        rule = node.visible(x.c, PRINCIPAL_PARAMS)
        if node.lookup_only:
            columns.append(rule.label("visible"))
        else:
            where.append(rule)
    return select(*columns).where(*where)


async def rows_by_ids(
    session: AsyncSession, type_name: str, principal: Principal, ids: Sequence[int]
) -> dict[int, Any]:
    """The loaders' read of objects by id, from the type's description."""
    node = TYPES[type_name]
    return await prepared.by_id(
        session,
        ("rows_by_ids", type_name),
        lambda: _by_ids(node),
        ids=list(ids),
        **principal_params(principal),
    )


# The loaders' pages of a list, per parent --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _List:
    listing: Listing
    source: Source
    params: dict[str, Any]
    # The target's column holding the parent's id; None for a list of the root.
    parent: Any


def _list(principal: Principal, type_name: str, field: str, args: ListArgs) -> _List:
    listing = TYPES[type_name].fields[field]
    assert isinstance(listing, Listing)
    target = TYPES[listing.target]

    def build() -> Select[Any]:
        return listed_rows(listing, target, PRINCIPAL_PARAMS, args, named_param)

    source = Source(("listing", type_name, field, listing.arguments.shape(args.rest)), build)
    params = {**principal_params(principal), **listing.arguments.params(args.rest)}
    parent = None
    if listing.parent is not None:
        parent = listing.parent(source_of(target).selected_columns)
    return _List(listing, source, params, parent)


async def listing_pages(
    session: AsyncSession,
    principal: Principal,
    type_name: str,
    field: str,
    parent_ids: Sequence[int] | None,
    args: ListArgs,
) -> dict[int, Page]:
    """A page of the list `type_name.field` for each parent (for a list of the root, one page
    under the key 0): the loaders' read, made from the list's description."""
    found = _list(principal, type_name, field, args)
    keys, page = found.listing.keys(args.rest), args.page
    if found.parent is None:
        return {0: await fetch_page(session, found.source, keys, page, **found.params)}
    ids = parent_ids or []
    return await pages_by_parent(
        session, found.source, found.parent, ids, keys, page, **found.params
    )


async def listing_counts(
    session: AsyncSession,
    principal: Principal,
    type_name: str,
    field: str,
    parent_ids: Sequence[int] | None,
    args: ListArgs,
) -> dict[int, int]:
    """The number of rows of the list `type_name.field` for each parent (the root's under 0)."""
    found = _list(principal, type_name, field, args)
    if found.parent is None:
        return {0: await count(session, found.source, **found.params)}
    ids = parent_ids or []
    return await counts_by_parent(session, found.source, found.parent, ids, **found.params)


# The loaders' rows of a relationship and values, per parent ----------------------------------
#
# The parents of one batch are a relation, `unnest(:ids, ...) WITH ORDINALITY`: for each, its
# id, a column per parameter of the field's arguments (so that parents asking with different
# values share the statement) and its place in the batch (`tg_n`). The description's rows are
# read for each parent as the compiled statement reads them for its parent row (`LATERAL`),
# where the parent's columns are its `id` alone: a relationship by another of the parent's
# columns is a read by id (`rows_by_ids`), batched across parents.

_PLACE = "tg_n"


def _arg(name: str) -> str:
    return f"arg_{name}"


def _parents(params: Mapping[str, Any]) -> Any:
    """The parents' relation, with a column for each parameter (name: its type)."""
    arrays = [bindparam(_arg(name), type_=ARRAY(type_)) for name, type_ in params.items()]
    named = [column(name, type_) for name, type_ in params.items()]
    return (
        func.unnest(ids_param("ids"), *arrays)
        .table_valued(column("id", BigInteger), *named, with_ordinality=_PLACE)
        .render_derived(name="tg_parent")
    )


def _per_parent(make: Callable[[Any, Param], Any]) -> tuple[Any, Any]:
    """The parents' relation and what `make(parent columns, param)` builds over it, each
    parameter of the field a column of the parents."""
    types: dict[str, Any] = {}

    def record(name: str, type_: Any) -> Any:
        assert name not in ("id", _PLACE), f"a parameter may not be named {name}"
        types[name] = type_
        return named_param(name, type_)

    make(_parents({}).c, record)
    parents = _parents(types)
    return parents, make(parents.c, lambda name, type_: parents.c[name])


def _relationship(type_name: str, field: str) -> tuple[One | Many, NodeType]:
    described = TYPES[type_name].fields[field]
    assert isinstance(described, (One, Many)), f"{type_name}.{field} is no relationship"
    return described, TYPES[described.target]


def _related(type_name: str, field: str, args: Any) -> Select[Any]:
    described, target = _relationship(type_name, field)

    def rows(parent: Any, param: Param) -> Select[Any]:
        return related_rows(described, target, parent, PRINCIPAL_PARAMS, args, param)

    parents, found = _per_parent(rows)
    if isinstance(described, One):
        found = found.limit(literal_column("1"))
    x = found.lateral("tg_rows")
    stmt = select(parents.c[_PLACE], *_loaded_columns(target, x.c)).select_from(
        parents.join(x, true())
    )
    if isinstance(described, Many):
        stmt = stmt.order_by(parents.c[_PLACE], *described.order(x.c))
    return stmt


async def related(
    session: AsyncSession,
    principal: Principal,
    type_name: str,
    field: str,
    keys: Sequence[tuple[int, Any]],
) -> dict[tuple[int, Any], Any]:
    """The rows of the relationship `type_name.field` (a `One`: a row, absent where there is
    none; a `Many`: a list in the description's order) for each (parent id, the field's
    converted arguments, None without). One statement per shape of the arguments. A list the
    description `refused` to the principal is not asked for: the resolvers answer the error."""
    described, _ = _relationship(type_name, field)
    arguments = described.arguments
    shapes: dict[Hashable, list[tuple[int, Any]]] = {}
    for key in keys:
        shapes.setdefault(arguments.shape(key[1]) if arguments else None, []).append(key)
    found: dict[tuple[int, Any], Any] = {}
    if isinstance(described, Many):
        found = {key: [] for key in keys}
    for shape, batch in shapes.items():
        params = [arguments.params(args) for _, args in batch] if arguments else []
        columns = {
            _arg(name): [given[name] for given in params] for name in (params[0] if params else ())
        }
        rows = await prepared.rows(
            session,
            ("related", type_name, field, shape),
            lambda args=batch[0][1]: _related(type_name, field, args),
            ids=[parent_id for parent_id, _ in batch],
            **columns,
            **principal_params(principal),
        )
        for row in rows:
            key = batch[row[_PLACE] - 1]
            if isinstance(described, Many):
                found[key].append(row)
            else:
                found[key] = row
    return found


def _values(type_name: str, field: str) -> Select[Any]:
    described = TYPES[type_name].fields[field]
    assert isinstance(described, Value), f"{type_name}.{field} is no value"
    parents = _parents({})
    value = described.sql(parents.c, PRINCIPAL_PARAMS).label("value")
    return select(parents.c.id, value)


async def values(
    session: AsyncSession, principal: Principal, type_name: str, field: str, ids: Sequence[int]
) -> dict[int, Any]:
    """The value `type_name.field` for each parent id: for values the description reads from
    the parent's id by a statement of their own (a count), not from the parent's row."""
    rows = await prepared.rows(
        session,
        ("values", type_name, field),
        lambda: _values(type_name, field),
        ids=list(ids),
        **principal_params(principal),
    )
    return {row["id"]: row["value"] for row in rows}
