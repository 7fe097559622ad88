"""createTask, updateTask, deleteTask, addLabelsToTask, removeLabelsFromTask."""

from __future__ import annotations

from datetime import date
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import tasks as task_db
from db.models import TaskPriority as DbPriority
from db.models import TaskStatus as DbStatus
from db.principals import Principal
from db.problems import ProblemCode, reject
from graph.context import context_of
from graph.ids import to_global_id
from graph.mutations.common import UserError, input_id, perform
from graph.types.common import TaskPriority, TaskStatus
from graph.types.task import Task


@strawberry.input
class CreateTaskInput:
    project_id: strawberry.ID
    title: str
    description: str | None = ""
    status: TaskStatus | None = DbStatus.TODO
    priority: TaskPriority | None = DbPriority.NONE
    # UNSET rather than None keeps "= null" out of the schema; both mean "not given".
    due_date: date | None = strawberry.UNSET
    assignee_id: strawberry.ID | None = strawberry.UNSET
    label_ids: list[strawberry.ID] | None = strawberry.UNSET


@strawberry.input(
    description="Only the fields present are changed; an explicit null clears a nullable field."
)
class UpdateTaskInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.UNSET
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    status: TaskStatus | None = strawberry.UNSET
    priority: TaskPriority | None = strawberry.UNSET
    due_date: date | None = strawberry.UNSET
    assignee_id: strawberry.ID | None = strawberry.UNSET
    after_task_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Place the task between two neighbours on a board (either may be omitted).",
    )
    before_task_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class DeleteTaskInput:
    id: strawberry.ID


@strawberry.input
class TaskLabelsInput:
    task_id: strawberry.ID
    label_ids: list[strawberry.ID]


@strawberry.type
class TaskPayload:
    task: Task | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteTaskPayload:
    deleted_task_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _kept(value: Any) -> Any:
    """Strawberry's UNSET (field omitted) as the db layer's KEEP."""
    return task_db.KEEP if value is strawberry.UNSET else value


def _optional_id(value: str | None, expected: str, name: str) -> int | None:
    return (
        None
        if value is None or value is strawberry.UNSET
        else input_id(value, expected, "input", name)
    )


def _label_ids(values: list[strawberry.ID] | None) -> list[int]:
    if not values:
        return []
    # Checked before decoding, so that a huge list is refused without decoding it.
    if len(values) > task_db.MAX_LABELS_PER_CALL:
        raise reject(
            f"Give at most {task_db.MAX_LABELS_PER_CALL} labels at once.",
            ProblemCode.LIMIT_EXCEEDED,
            "input",
            "labelIds",
        )
    return [input_id(v, "Label", "input", "labelIds") for v in values]


def _task_payload(row: Any, errors: list[UserError]) -> TaskPayload:
    return TaskPayload(task=Task.from_row(row) if row is not None else None, user_errors=errors)


@strawberry.type
class TaskMutations:
    @strawberry.mutation(
        description="Create a task at the end of a project's board (members and WRITE keys)."
    )
    async def create_task(self, info: strawberry.Info, input: CreateTaskInput) -> TaskPayload:
        async def work(session: AsyncSession, principal: Principal) -> task_db.CreatedTask:
            return await task_db.create_task(
                session,
                principal,
                project_id=input_id(input.project_id, "Project", "input", "projectId"),
                title=input.title,
                # Explicit nulls of these defaulted fields mean the default.
                description=input.description if input.description is not None else "",
                status=input.status if input.status is not None else DbStatus.TODO,
                priority=input.priority if input.priority is not None else DbPriority.NONE,
                due_date=None if input.due_date is strawberry.UNSET else input.due_date,
                assignee_id=_optional_id(input.assignee_id, "User", "assigneeId"),
                label_ids=_label_ids(input.label_ids),
            )

        created, errors = await perform(info, work)
        if created is None:
            return TaskPayload(user_errors=errors)
        # What the command read in its transaction serves the payload's fields as well.
        loaders = context_of(info).loaders
        loaders.project.prime(created.project.id, created.project)
        loaders.related("Task", "labels").prime((created.row.id, None), created.labels)
        return _task_payload(created.row, errors)

    @strawberry.mutation(
        description="Change a task; only the fields present change, an explicit null clears "
        "dueDate or assigneeId. With expectedVersion, refuses (STALE) when the task changed."
    )
    async def update_task(self, info: strawberry.Info, input: UpdateTaskInput) -> TaskPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            task_id = input_id(input.id, "Task", "input", "id")
            assignee = input.assignee_id
            changes = task_db.TaskChanges(
                title=_kept(input.title),
                description=_kept(input.description),
                status=_kept(input.status),
                priority=_kept(input.priority),
                due_date=_kept(input.due_date),
                assignee_id=task_db.KEEP
                if assignee is strawberry.UNSET
                else _optional_id(assignee, "User", "assigneeId"),
                after_task_id=_optional_id(input.after_task_id, "Task", "afterTaskId"),
                before_task_id=_optional_id(input.before_task_id, "Task", "beforeTaskId"),
                expected_version=None
                if input.expected_version is strawberry.UNSET
                else input.expected_version,
            )
            return await task_db.update_task(session, principal, task_id, changes)

        row, errors = await perform(info, work)
        return _task_payload(row, errors)

    @strawberry.mutation(
        description="Delete a task with its comments and labels; its activity history stays."
    )
    async def delete_task(self, info: strawberry.Info, input: DeleteTaskInput) -> DeleteTaskPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            task_id = input_id(input.id, "Task", "input", "id")
            return await task_db.delete_task(session, principal, task_id)

        row, errors = await perform(info, work)
        if row is None:
            return DeleteTaskPayload(user_errors=errors)
        return DeleteTaskPayload(deleted_task_id=strawberry.ID(to_global_id("Task", row.id)))

    @strawberry.mutation(description="Add labels to a task; labels it already has are skipped.")
    async def add_labels_to_task(
        self, info: strawberry.Info, input: TaskLabelsInput
    ) -> TaskPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            task_id = input_id(input.task_id, "Task", "input", "taskId")
            label_ids = _label_ids(input.label_ids)
            return await task_db.add_labels_to_task(session, principal, task_id, label_ids)

        row, errors = await perform(info, work)
        return _task_payload(row, errors)

    @strawberry.mutation(
        description="Remove labels from a task; labels it does not have are skipped."
    )
    async def remove_labels_from_task(
        self, info: strawberry.Info, input: TaskLabelsInput
    ) -> TaskPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            task_id = input_id(input.task_id, "Task", "input", "taskId")
            label_ids = _label_ids(input.label_ids)
            return await task_db.remove_labels_from_task(session, principal, task_id, label_ids)

        row, errors = await perform(info, work)
        return _task_payload(row, errors)
