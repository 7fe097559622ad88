"""The live side of the API: `Subscription.taskEvents` and the events it streams.

Events are rendered by the read path's one statement (graph/pubsub.py renders each event once
per group of subscribers who see the same thing), so these types have no resolvers of their
own; `taskEvents` is served by graph/subscriptions.py, ahead of the schema's execution.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from db import models
from graph.errors import ApiError, ErrorCode
from graph.types.task import Task
from graph.types.user import User

TaskEventKind = strawberry.enum(models.TaskEventKind, name="TaskEventKind")


@strawberry.type
class TaskEvent:
    kind: TaskEventKind
    task_id: strawberry.ID
    task: Task | None = strawberry.field(
        description="The task as it is after the change; null when it was deleted."
    )
    actor: User | None
    changed_fields: list[str]
    occurred_at: datetime


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Changes to tasks of a workspace (optionally one project) that the viewer "
        "can read, after they commit."
    )
    async def task_events(
        self, workspace_id: strawberry.ID, project_id: strawberry.ID | None = None
    ) -> AsyncGenerator[TaskEvent, None]:
        # Reached only by a selection the one-statement read path cannot render (larger than
        # it renders): graph/subscriptions.py serves every other.
        raise ApiError(
            "This selection is too large to be subscribed to; select fewer fields.",
            ErrorCode.QUERY_TOO_COMPLEX,
        )
        yield  # an async generator, as a subscription resolver must be
