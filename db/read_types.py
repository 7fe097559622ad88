"""The read description of every API type (`db.descriptions`), by the API's type name, and
of the root: what the one-statement read path (`db.json_statement`) is built from. Each type's
own description is in its domain module, beside the rules the loaders and commands use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, any_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import prepared
from db.accounts import USER
from db.activities import ACTIVITY, FIELD_CHANGE
from db.api_keys import API_KEY
from db.comments import COMMENT
from db.descriptions import (
    Arguments,
    ById,
    ListArgs,
    Listing,
    NodeType,
    One,
    Value,
    named_param,
    page_arguments,
    sort_keys_of,
    source_of,
)
from db.labels import LABEL
from db.pagination import Page, Source, count, counts_by_parent, fetch_page, pages_by_parent
from db.principals import PRINCIPAL_PARAMS, Principal, principal_params
from db.projects import PROJECT, TASK_COUNTS
from db.sql import in_ids
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


def _by_ids(node: NodeType) -> Select[Any]:
    """Rows of `node` by id (`:ids`), visible to the principal (`principal_params`): the
    source's columns, and the values the loaders' rows carry (`Value.loaded`)."""
    x = source_of(node).subquery()
    loaded = {n: v for n, v in node.fields.items() if isinstance(v, Value) and v.loaded}
    columns: list[Any] = [c for c in x.c if c.name not in loaded]
    columns += [v.sql(x.c, PRINCIPAL_PARAMS).label(n) for n, v in loaded.items()]
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
        rows = source_of(target)
        if listing.where is None:
            return rows
        return rows.where(
            *listing.where(rows.selected_columns, PRINCIPAL_PARAMS, args, named_param)
        )

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
