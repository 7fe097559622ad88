from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from db import tasks as task_db
from db.models import TaskPriority as DbPriority
from db.models import TaskStatus as DbStatus
from db.wire import task_key
from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import (
    Connection,
    Node,
    TaskPriority,
    TaskStatus,
    columns,
    fill,
    ids_of,
    listing,
    related,
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

    def to_db(self) -> tuple[str, bool]:
        return self.field.value, self.direction == OrderDirection.DESC


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


_STATUS = {s.value: s for s in DbStatus}
_PRIORITY = {p.value: p for p in DbPriority}


async def task_connection(
    info: strawberry.Info, type_name: str, parent_id: int, **given: Any
) -> Connection[Task]:
    """A workspace's or project's tasks."""
    return await listing(info, type_name, "tasks", parent_id, Task.from_row, **given)


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
    # The project's key, when the row brought it (task rows do; a command's rows may not).
    _project_key: strawberry.Private[str | None] = None

    @classmethod
    def from_row(cls, row: Any) -> Task:
        values = columns(row)
        task: Task = fill(
            cls.__new__(cls),
            id=strawberry.ID(to_global_id("Task", values["id"])),
            db_id=values["id"],
            workspace_id=values["workspace_id"],
            project_id=values["project_id"],
            assignee_id=values["assignee_id"],
            creator_id=values["creator_id"],
            number=values["number"],
            title=values["title"],
            description=values["description"],
            status=_STATUS[values["status"]],
            priority=_PRIORITY[values["priority"]],
            due_date=values["due_date"],
            position=values["position"],
            version=values["version"],
            completed_at=values["completed_at"],
            created_at=values["created_at"],
            updated_at=values["updated_at"],
            _project_key=values.get("project_key"),
        )
        return task

    @strawberry.field(description='Human key, project key and number, e.g. "ENG-42".')
    async def key(self, info: strawberry.Info) -> str:
        project_key = self._project_key
        if project_key is None:
            project_key = (await context_of(info).loaders.project.load(self.project_id)).key
        return task_key(project_key, self.number)

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

        rows = await related(info, "Task", "labels", self.db_id)
        return [Label.from_row(row) for row in rows]

    @strawberry.field
    async def comments(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Comment, strawberry.lazy("graph.types.comment")]]:
        from graph.types.comment import Comment

        return await listing(
            info, "Task", "comments", self.db_id, Comment.from_row, first=first, after=after
        )

    @strawberry.field
    async def comment_count(self, info: strawberry.Info) -> int:
        return await context_of(info).loaders.values("Task", "comment_count").load(self.db_id)  # type: ignore[no-any-return]

    @strawberry.field(description="What happened to the task, newest first.")
    async def activity(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Activity, strawberry.lazy("graph.types.activity")]]:
        from graph.types.activity import Activity

        return await listing(
            info, "Task", "activity", self.db_id, Activity.from_row, first=first, after=after
        )

    @strawberry.field(description="Whether the viewer may change this task.")
    def viewer_can_edit(self, info: strawberry.Info) -> bool:
        return context_of(info).principal.can_edit_tasks(self.workspace_id)
