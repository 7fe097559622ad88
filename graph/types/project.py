from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from db.read_types import TYPES
from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import Connection, Node, columns, fill, related
from graph.types.task import Task, TaskFilter, TaskOrder, task_connection

if TYPE_CHECKING:
    from graph.types.workspace import Workspace


@strawberry.type(description="Number of tasks in a project by status.")
class TaskCounts:
    backlog: int
    todo: int
    in_progress: int
    in_review: int
    done: int
    canceled: int
    total: int

    @classmethod
    def from_row(cls, row: Any) -> TaskCounts:
        # The counts are the columns the description names (db.projects.TASK_COUNTS).
        return cls(**{name: row[name] for name in TYPES["TaskCounts"].fields})


@strawberry.type
class Project(Node):
    key: str = strawberry.field(
        description="Short uppercase key that prefixes task keys, unique in its workspace, "
        'e.g. "ENG".'
    )
    name: str
    description: str
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    db_id: strawberry.Private[int]
    workspace_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Project:
        v = columns(row)
        return fill(  # type: ignore[no-any-return]
            cls.__new__(cls),
            id=strawberry.ID(to_global_id("Project", v["id"])),
            db_id=v["id"],
            workspace_id=v["workspace_id"],
            key=v["key"],
            name=v["name"],
            description=v["description"],
            archived_at=v["archived_at"],
            created_at=v["created_at"],
            updated_at=v["updated_at"],
        )

    @strawberry.field
    async def workspace(
        self, info: strawberry.Info
    ) -> Annotated[Workspace, strawberry.lazy("graph.types.workspace")]:
        from graph.types.workspace import Workspace

        return Workspace.from_row(await context_of(info).loaders.workspace.load(self.workspace_id))

    @strawberry.field(description="The project's tasks; by default in board order (position).")
    async def tasks(
        self,
        info: strawberry.Info,
        filter: TaskFilter | None = None,
        order_by: list[TaskOrder] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Task]:
        return await task_connection(
            info,
            "Project",
            self.db_id,
            filter=filter,
            order_by=order_by,
            first=first,
            after=after,
            last=last,
            before=before,
        )

    @strawberry.field
    async def task_counts(self, info: strawberry.Info) -> TaskCounts:
        return TaskCounts.from_row(await related(info, "Project", "task_counts", self.db_id))
