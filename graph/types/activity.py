from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from db.models import ActivityKind as DbKind
from graph.context import context_of
from graph.ids import to_global_id
from graph.types.api_key import ApiKey
from graph.types.common import ActivityKind, Node
from graph.types.task import Task
from graph.types.user import User


@strawberry.type
class FieldChange:
    field: str
    from_: str | None = strawberry.field(name="from")
    to: str | None


@strawberry.type
class Activity(Node):
    kind: ActivityKind
    task_key: str
    changes: list[FieldChange]
    created_at: datetime
    db_id: strawberry.Private[int]
    task_id: strawberry.Private[int]
    actor_user_id: strawberry.Private[int | None]
    actor_api_key_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: Any) -> Activity:
        return cls(
            id=strawberry.ID(to_global_id("Activity", row.id)),
            db_id=row.id,
            task_id=row.task_id,
            actor_user_id=row.actor_user_id,
            actor_api_key_id=row.actor_api_key_id,
            kind=DbKind(row.kind),
            task_key=row.task_key,
            changes=[
                FieldChange(field=c["field"], from_=c.get("from"), to=c.get("to"))
                for c in row.changes
            ],
            created_at=row.created_at,
        )

    @strawberry.field(description="The user who acted; null when an API key acted.")
    async def actor(self, info: strawberry.Info) -> User | None:
        if self.actor_user_id is None:
            return None
        row = await context_of(info).loaders.user.load(self.actor_user_id)
        return User.from_row(row) if row is not None else None

    @strawberry.field(description="The API key that acted, if any (visible to workspace admins).")
    async def api_key(self, info: strawberry.Info) -> ApiKey | None:
        if self.actor_api_key_id is None:
            return None
        row = await context_of(info).loaders.api_key.load(self.actor_api_key_id)
        return ApiKey.from_row(row) if row is not None else None

    @strawberry.field(description="The task; null once it has been deleted.")
    async def task(self, info: strawberry.Info) -> Task | None:
        row = await context_of(info).loaders.task.load(self.task_id)
        return Task.from_row(row) if row is not None else None
