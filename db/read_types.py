"""The read description of every API type (`db.descriptions`), by the API's type name, and
of the root: what the one-statement read path (`db.json_statement`) is built from. Each type's
own description is in its domain module, beside the rules the loaders and commands use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Select, Text, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from db import prepared
from db.accounts import USER
from db.activities import ACTIVITY, FIELD_CHANGE
from db.api_keys import API_KEY
from db.comments import COMMENT
from db.descriptions import (
    Arguments,
    ById,
    Listing,
    NodeType,
    One,
    Value,
    page_arguments,
    sort_keys_of,
    source_of,
)
from db.labels import LABEL
from db.principals import PRINCIPAL_PARAMS, Principal, principal_params
from db.projects import PROJECT, TASK_COUNTS
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
            where=lambda w, parent, p, args, param: [w.id == any_(p.readable)],
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
    where = [x.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))]
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
