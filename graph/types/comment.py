from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import Node, columns
from graph.types.task import Task
from graph.types.user import User


@strawberry.type
class Comment(Node):
    body: str
    created_at: datetime
    updated_at: datetime
    db_id: strawberry.Private[int]
    task_id: strawberry.Private[int]
    author_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Comment:
        values = columns(row)
        return cls(
            id=strawberry.ID(to_global_id("Comment", values["id"])),
            db_id=values["id"],
            task_id=values["task_id"],
            author_id=values["author_id"],
            body=values["body"],
            created_at=values["created_at"],
            updated_at=values["updated_at"],
        )

    @strawberry.field
    async def author(self, info: strawberry.Info) -> User:
        return User.from_row(await context_of(info).loaders.user.load(self.author_id))

    @strawberry.field
    async def task(self, info: strawberry.Info) -> Task:
        return Task.from_row(await context_of(info).loaders.task.load(self.task_id))
