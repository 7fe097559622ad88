from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import Node, columns, fill

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
        v = columns(row)
        return fill(  # type: ignore[no-any-return]
            cls.__new__(cls),
            id=strawberry.ID(to_global_id("Label", v["id"])),
            db_id=v["id"],
            workspace_id=v["workspace_id"],
            name=v["name"],
            color=v["color"],
        )

    @strawberry.field
    async def workspace(
        self, info: strawberry.Info
    ) -> Annotated[Workspace, strawberry.lazy("graph.types.workspace")]:
        from graph.types.workspace import Workspace

        return Workspace.from_row(await context_of(info).loaders.workspace.load(self.workspace_id))
