from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import Node

if TYPE_CHECKING:
    from graph.types.workspace import Workspace


@strawberry.type
class Label(Node):
    name: str
    color: str = strawberry.field(description='Hex colour, e.g. "#d73a4a".')
    db_id: strawberry.Private[int]
    workspace_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Label:
        return cls(
            id=strawberry.ID(to_global_id("Label", row.id)),
            db_id=row.id,
            workspace_id=row.workspace_id,
            name=row.name,
            color=row.color,
        )

    @strawberry.field
    async def workspace(
        self, info: strawberry.Info
    ) -> Annotated[Workspace, strawberry.lazy("graph.types.workspace")]:
        from graph.types.workspace import Workspace

        return Workspace.from_row(await context_of(info).loaders.workspace.load(self.workspace_id))
