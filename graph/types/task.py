from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from db import tasks as task_db
from db.errors import InvalidArgument
from db.models import TaskPriority as DbPriority
from db.models import TaskStatus as DbStatus
from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import (
    Connection,
    Node,
    TaskPriority,
    TaskStatus,
    connection,
    ids_of,
    page_args,
)
from graph.types.user import User

if TYPE_CHECKING:
    from graph.types.activity import Activity
    from graph.types.comment import Comment
    from graph.types.label import Label
    from graph.types.project import Project


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class TaskOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    DUE_DATE = "DUE_DATE"
    PRIORITY = "PRIORITY"
    POSITION = "POSITION"
    NUMBER = "NUMBER"


@strawberry.input
class TaskOrder:
    field: TaskOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(
    description="All given conditions must hold (AND). A list condition matches any of its "
    "values (OR)."
)
class TaskFilter:
    status: list[TaskStatus] | None = None
    priority: list[TaskPriority] | None = None
    assignee_ids: list[strawberry.ID] | None = None
    unassigned: bool | None = None
    label_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Tasks that carry every one of these labels."
    )
    project_ids: list[strawberry.ID] | None = None
    due_before: date | None = strawberry.field(
        default=None, description="Tasks due strictly before this date."
    )
    due_after: date | None = strawberry.field(
        default=None, description="Tasks due strictly after this date."
    )
    completed: bool | None = None
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive match on title and description."
    )

    def to_db(self) -> task_db.TaskFilter:
        return task_db.TaskFilter(
            statuses=tuple(DbStatus(s.value) for s in self.status)
            if self.status is not None
            else None,
            priorities=tuple(DbPriority(p.value) for p in self.priority)
            if self.priority is not None
            else None,
            assignee_ids=_tuple(ids_of(self.assignee_ids, "User", "filter.assigneeIds")),
            unassigned=self.unassigned,
            label_ids=_tuple(ids_of(self.label_ids, "Label", "filter.labelIds")),
            project_ids=_tuple(ids_of(self.project_ids, "Project", "filter.projectIds")),
            due_before=self.due_before,
            due_after=self.due_after,
            completed=self.completed,
            search=self.search,
        )


def _tuple(values: list[int] | None) -> tuple[int, ...] | None:
    return tuple(values) if values is not None else None


MAX_ORDER_KEYS = 6


async def task_connection(
    info: strawberry.Info,
    parent: str,
    parent_id: int,
    filter: TaskFilter | None,
    order_by: list[TaskOrder] | None,
    default_order: tuple[tuple[str, bool], ...],
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Connection[Task]:
    ctx = context_of(info)
    if order_by is not None and len(order_by) > MAX_ORDER_KEYS:
        raise InvalidArgument(f"orderBy takes at most {MAX_ORDER_KEYS} keys.")
    order = (
        tuple((o.field.value, o.direction == OrderDirection.DESC) for o in order_by)
        if order_by
        else default_order
    )
    flt = filter.to_db() if filter is not None else None
    args = page_args(first, after, last, before)
    page = await ctx.loaders.task_pages(parent, flt, order, args).load(parent_id)

    async def total() -> int:
        return await ctx.loaders.task_count(parent, flt).load(parent_id)

    return connection(page, Task.from_row, total)


@strawberry.type
class Task(Node):
    number: int
    title: str
    description: str
    status: TaskStatus
    priority: TaskPriority
    due_date: date | None
    position: float = strawberry.field(
        description="Ordering of the task on a board; smaller comes first."
    )
    version: int = strawberry.field(
        description="Increases by one on every change; pass it back as expectedVersion to "
        "avoid lost updates."
    )
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    db_id: strawberry.Private[int]
    workspace_id: strawberry.Private[int]
    project_id: strawberry.Private[int]
    assignee_id: strawberry.Private[int | None]
    creator_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(
            id=strawberry.ID(to_global_id("Task", row.id)),
            db_id=row.id,
            workspace_id=row.workspace_id,
            project_id=row.project_id,
            assignee_id=row.assignee_id,
            creator_id=row.creator_id,
            number=row.number,
            title=row.title,
            description=row.description,
            status=DbStatus(row.status),
            priority=DbPriority(row.priority),
            due_date=row.due_date,
            position=row.position,
            version=row.version,
            completed_at=row.completed_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field(description='Human key, project key and number, e.g. "ENG-42".')
    async def key(self, info: strawberry.Info) -> str:
        project = await context_of(info).loaders.project.load(self.project_id)
        return f"{project.key}-{self.number}"

    @strawberry.field
    async def project(
        self, info: strawberry.Info
    ) -> Annotated[Project, strawberry.lazy("graph.types.project")]:
        from graph.types.project import Project

        return Project.from_row(await context_of(info).loaders.project.load(self.project_id))

    @strawberry.field
    async def assignee(self, info: strawberry.Info) -> User | None:
        if self.assignee_id is None:
            return None
        row = await context_of(info).loaders.user.load(self.assignee_id)
        return User.from_row(row) if row is not None else None

    @strawberry.field
    async def creator(self, info: strawberry.Info) -> User:
        return User.from_row(await context_of(info).loaders.user.load(self.creator_id))

    @strawberry.field
    async def labels(
        self, info: strawberry.Info
    ) -> list[Annotated[Label, strawberry.lazy("graph.types.label")]]:
        from graph.types.label import Label

        rows = await context_of(info).loaders.labels_of_task.load(self.db_id)
        return [Label.from_row(row) for row in rows]

    @strawberry.field
    async def comments(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Comment, strawberry.lazy("graph.types.comment")]]:
        from graph.types.comment import Comment

        ctx = context_of(info)
        page = await ctx.loaders.comment_pages(page_args(first, after)).load(self.db_id)
        return connection(
            page, Comment.from_row, lambda: ctx.loaders.comment_count.load(self.db_id)
        )

    @strawberry.field
    async def comment_count(self, info: strawberry.Info) -> int:
        return await context_of(info).loaders.comment_count.load(self.db_id)

    @strawberry.field(description="What happened to the task, newest first.")
    async def activity(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Activity, strawberry.lazy("graph.types.activity")]]:
        from graph.types.activity import Activity

        ctx = context_of(info)
        page = await ctx.loaders.activity_pages(page_args(first, after)).load(self.db_id)
        return connection(
            page, Activity.from_row, lambda: ctx.loaders.activity_count.load(self.db_id)
        )

    @strawberry.field(description="Whether the viewer may change this task.")
    def viewer_can_edit(self, info: strawberry.Info) -> bool:
        return context_of(info).principal.can_edit_tasks(self.workspace_id)
