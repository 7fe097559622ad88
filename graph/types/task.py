from __future__ import annotations

import asyncio
import dataclasses
import enum
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from db import tasks as task_db
from db.models import TaskPriority as DbPriority
from db.models import TaskStatus as DbStatus
from graph.context import context_of
from graph.ids import to_global_id
from graph.lookahead import item_fields
from graph.types.common import (
    Connection,
    Node,
    TaskPriority,
    TaskStatus,
    columns,
    fill,
    ids_of,
    listing,
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
    """A workspace's or project's tasks, with what the query asks of each loaded ahead."""
    result = await listing(info, type_name, "tasks", parent_id, Task.from_row, **given)
    await prefetch(info, result.nodes)
    return result


async def prefetch(info: strawberry.Info, tasks: list[Task]) -> None:
    """Load what the query asks of every task of a page at once (one batch per relationship),
    so that the per-task fields below resolve without awaiting."""
    if not tasks:
        return
    wanted = item_fields(info)
    loaders = context_of(info).loaders
    ids = [t.db_id for t in tasks]
    jobs: dict[str, Any] = {}
    if "assignee" in wanted or "creator" in wanted:
        people = {t.assignee_id for t in tasks if t.assignee_id is not None}
        people |= {t.creator_id for t in tasks} if "creator" in wanted else set()
        jobs["people"] = loaders.user.load_many(sorted(people))
    if "labels" in wanted:
        jobs["labels"] = loaders.labels_of_task.load_many(ids)
    if "commentCount" in wanted:
        jobs["comment_count"] = loaders.comment_count.load_many(ids)
    if "project" in wanted or ("key" in wanted and any("key" not in t._pre for t in tasks)):
        jobs["projects"] = loaders.project.load_many(sorted({t.project_id for t in tasks}))
    if not jobs:
        return
    done = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    from graph.types.label import Label
    from graph.types.project import Project

    people_by_id = {row.id: User.from_row(row) for row in done.get("people", []) if row is not None}
    projects_by_id = {row.id: row for row in done.get("projects", []) if row is not None}
    # One object per project, not per task; built only when the query selects `project`.
    project_objects = (
        {pid: Project.from_row(row) for pid, row in projects_by_id.items()}
        if "project" in wanted
        else {}
    )
    for i, task in enumerate(tasks):
        pre = task._pre
        if "people" in done:
            pre["assignee"] = people_by_id.get(task.assignee_id) if task.assignee_id else None
            pre["creator"] = people_by_id.get(task.creator_id)
        if "labels" in done:
            pre["labels"] = [Label.from_row(row) for row in done["labels"][i]]
        if "comment_count" in done:
            pre["comment_count"] = done["comment_count"][i]
        if "projects" in done:
            pre["key"] = f"{projects_by_id[task.project_id].key}-{task.number}"
            if project_objects:
                pre["project"] = project_objects[task.project_id]


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
    # Relationship values loaded ahead by the list the task came in (see `prefetch`).
    _pre: strawberry.Private[dict[str, Any]] = dataclasses.field(default_factory=dict)

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
            _pre={},
        )
        project_key = values.get("project_key")
        if project_key is not None:
            task._pre["key"] = f"{project_key}-{values['number']}"
        return task

    # Each relationship field returns the value a list prefetched, or else an awaitable that
    # loads it: synchronous resolvers keep graphql-core off its slower async path.
    @strawberry.field(description='Human key, project key and number, e.g. "ENG-42".')
    def key(self, info: strawberry.Info) -> str:
        if "key" in self._pre:
            return self._pre["key"]  # type: ignore[no-any-return]
        return self._load_key(info)  # type: ignore[return-value]

    async def _load_key(self, info: strawberry.Info) -> str:
        project = await context_of(info).loaders.project.load(self.project_id)
        return f"{project.key}-{self.number}"

    @strawberry.field
    def project(
        self, info: strawberry.Info
    ) -> Annotated[Project, strawberry.lazy("graph.types.project")]:
        if "project" in self._pre:
            return self._pre["project"]  # type: ignore[no-any-return]
        return self._load_project(info)  # type: ignore[return-value]

    async def _load_project(self, info: strawberry.Info) -> Any:
        from graph.types.project import Project

        return Project.from_row(await context_of(info).loaders.project.load(self.project_id))

    @strawberry.field
    def assignee(self, info: strawberry.Info) -> User | None:
        if self.assignee_id is None:
            return None
        if "assignee" in self._pre:
            return self._pre["assignee"]  # type: ignore[no-any-return]
        return self._load_user(info, self.assignee_id)  # type: ignore[return-value]

    @strawberry.field
    def creator(self, info: strawberry.Info) -> User:
        if "creator" in self._pre:
            return self._pre["creator"]  # type: ignore[no-any-return]
        return self._load_user(info, self.creator_id)  # type: ignore[return-value]

    async def _load_user(self, info: strawberry.Info, user_id: int) -> User | None:
        row = await context_of(info).loaders.user.load(user_id)
        return User.from_row(row) if row is not None else None

    @strawberry.field
    def labels(
        self, info: strawberry.Info
    ) -> list[Annotated[Label, strawberry.lazy("graph.types.label")]]:
        if "labels" in self._pre:
            return self._pre["labels"]  # type: ignore[no-any-return]
        return self._load_labels(info)  # type: ignore[return-value]

    async def _load_labels(self, info: strawberry.Info) -> list[Any]:
        from graph.types.label import Label

        rows = await context_of(info).loaders.labels_of_task.load(self.db_id)
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
    def comment_count(self, info: strawberry.Info) -> int:
        if "comment_count" in self._pre:
            return self._pre["comment_count"]  # type: ignore[no-any-return]
        return context_of(info).loaders.comment_count.load(self.db_id)  # type: ignore[return-value]

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
