from __future__ import annotations

import asyncio
from typing import Any

import strawberry

from db.errors import InvalidArgument
from graph.context import Context, context_of
from graph.ids import from_global_id
from graph.types.activity import Activity
from graph.types.api_key import ApiKey
from graph.types.comment import Comment
from graph.types.common import Connection, Node, listing, related
from graph.types.label import Label
from graph.types.project import Project
from graph.types.task import Task
from graph.types.user import User
from graph.types.workspace import Workspace

MAX_NODES = 100

_NODE_TYPES: dict[str, tuple[str, Any]] = {
    "User": ("user", User),
    "Workspace": ("workspace", Workspace),
    "Project": ("project", Project),
    "Task": ("task", Task),
    "Label": ("label", Label),
    "Comment": ("comment", Comment),
    "Activity": ("activity", Activity),
    "ApiKey": ("api_key", ApiKey),
}


async def _resolve_node(ctx: Context, type_name: str, db_id: int) -> Node | None:
    loader_name, node_type = _NODE_TYPES[type_name]
    row = await getattr(ctx.loaders, loader_name).load(db_id)
    if row is None or (type_name == "User" and not row.visible):
        return None
    return node_type.from_row(row)  # type: ignore[no-any-return]


@strawberry.type
class Query:
    @strawberry.field(
        description="Any object by its global ID; null when it does not exist for the viewer."
    )
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        return await _resolve_node(context_of(info), *from_global_id(id))

    @strawberry.field(description=f"Objects by global ID, in the same order (at most {MAX_NODES}).")
    async def nodes(self, info: strawberry.Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise InvalidArgument(f"nodes takes at most {MAX_NODES} IDs; got {len(ids)}.")
        ctx = context_of(info)
        # Every ID is checked before any lookup starts, so a bad one fails the field at once.
        keys = [from_global_id(i) for i in ids]
        return list(await asyncio.gather(*(_resolve_node(ctx, *key) for key in keys)))

    @strawberry.field(description="The signed-in user; null for anonymous requests and API keys.")
    async def me(self, info: strawberry.Info) -> User | None:
        ctx = context_of(info)
        if ctx.principal.user_id is None:
            return None
        row = await ctx.loaders.user.load(ctx.principal.user_id)
        return User.from_row(row) if row is not None else None

    @strawberry.field(
        description="Workspaces the viewer can read (for an API key: its own workspace), by slug."
    )
    async def workspaces(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Workspace]:
        return await listing(
            info, "Query", "workspaces", 0, Workspace.from_row, first=first, after=after
        )

    @strawberry.field
    async def workspace(self, info: strawberry.Info, slug: str) -> Workspace | None:
        # The root is the parent 0 (as for its lists).
        row = await related(info, "Query", "workspace", 0, slug=slug)
        if row is None:
            return None
        context_of(info).loaders.workspace.prime(row.id, row)
        return Workspace.from_row(row)
