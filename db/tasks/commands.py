"""Task commands: create, update, delete, add and remove labels; each writes its activity."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities, wire
from db.activities import change
from db.labels import label_order, label_sort_key
from db.models import (
    ActivityKind,
    TaskPriority,
    TaskStatus,
)
from db.permissions import require_task_editor
from db.principals import Principal
from db.problems import Problem, ProblemCode, Rejected, reject
from db.sql import any_id
from db.tasks.placement import POSITION_STEP, placement
from db.tasks.tables import TL, K, L, M, P, T
from db.validation import length

# ---------------------------------------------------------------- commands


TITLE_MAX = 200
DESCRIPTION_MAX = 50_000
MAX_LABELS_PER_CALL = 100
CLOSED = frozenset({TaskStatus.DONE, TaskStatus.CANCELED})


class Keep(enum.Enum):
    """Marks a field of an update that was not given (as opposed to an explicit null)."""

    KEEP = "KEEP"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class TaskChanges:
    """A partial update: KEEP leaves a field as it is, None clears a nullable one."""

    title: str | Keep | None = KEEP
    description: str | Keep | None = KEEP
    status: TaskStatus | Keep | None = KEEP
    priority: TaskPriority | Keep | None = KEEP
    due_date: date | Keep | None = KEEP
    assignee_id: int | Keep | None = KEEP
    after_task_id: int | None = None
    before_task_id: int | None = None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class CreatedTask:
    """The new task, with the project and labels read while creating it (so that the API
    payload need not read them again)."""

    row: Any
    project: Any
    labels: list[Any]


def _text_problems(
    value: str, name: str, label: str, *, minimum: int, maximum: int
) -> list[Problem]:
    return length(value, ("input", name), minimum=minimum, maximum=maximum, label=label)


def _title_problems(title: str) -> list[Problem]:
    return _text_problems(title.strip(), "title", "Title", minimum=1, maximum=TITLE_MAX)


def _description_problems(description: str) -> list[Problem]:
    return _text_problems(
        description, "description", "Description", minimum=0, maximum=DESCRIPTION_MAX
    )


def _unique_label_ids(label_ids: Sequence[int]) -> list[int]:
    if len(label_ids) > MAX_LABELS_PER_CALL:
        raise reject(
            f"Give at most {MAX_LABELS_PER_CALL} labels at once.",
            ProblemCode.LIMIT_EXCEEDED,
            "input",
            "labelIds",
        )
    return list(dict.fromkeys(label_ids))


def _ids_param(ids: Sequence[int]) -> Any:
    return bindparam(None, list(ids), type_=ARRAY(BigInteger))


@dataclass(frozen=True, slots=True)
class _Named:
    """A label as far as activity text needs it."""

    id: int
    name: str


def _names(labels: Sequence[Any]) -> str:
    return ", ".join(row.name for row in sorted(labels, key=label_sort_key))


async def _workspace_labels(
    session: AsyncSession, workspace_id: Any, ids: Sequence[int]
) -> list[Any]:
    """The labels among `ids` that belong to the workspace, key-share locked so that a
    concurrent deleteLabel cannot remove them before the links are written."""
    if not ids:
        return []
    stmt = (
        select(L)
        .where(any_id(L.c.id, ids), L.c.workspace_id == workspace_id)
        .order_by(*label_order(L.c))
        .with_for_update(read=True, key_share=True)
    )
    return list((await session.execute(stmt)).all())


def _missing_labels(found: Sequence[Any], wanted: Sequence[int]) -> list[Problem]:
    if len(found) == len(wanted):
        return []
    return [
        Problem(
            "No label with this ID in the task's workspace.",
            ProblemCode.NOT_FOUND,
            ("input", "labelIds"),
        )
    ]


async def _link_labels(session: AsyncSession, task_id: int, label_ids: Sequence[int]) -> list[int]:
    """Insert the links in one statement; returns the label ids that were not linked yet."""
    if not label_ids:
        return []
    stmt = (
        pg_insert(TL)
        .from_select(
            ["task_id", "label_id"],
            select(literal(task_id, BigInteger), func.unnest(_ids_param(label_ids))),
        )
        .on_conflict_do_nothing()
        .returning(TL.c.label_id)
    )
    return list((await session.execute(stmt)).scalars())


def _creator(principal: Principal) -> Any:
    """Tasks record a user as creator; an API key's creator stands in for the key."""
    if principal.acting_user_id is not None:
        return principal.acting_user_id
    return select(K.c.created_by_id).where(K.c.id == principal.api_key_id).scalar_subquery()


async def create_task(
    session: AsyncSession,
    principal: Principal,
    *,
    project_id: int,
    title: str,
    description: str = "",
    status: TaskStatus = TaskStatus.TODO,
    priority: TaskPriority = TaskPriority.NONE,
    due_date: date | None = None,
    assignee_id: int | None = None,
    label_ids: Sequence[int] = (),
) -> CreatedTask:
    """Create a task at the end of its project's board.

    The activity entry (TASK_CREATED) lists the initial values: title, status and priority
    always; description, dueDate, assigneeId (user id) and labels (names) when given.
    """
    label_ids = _unique_label_ids(label_ids)
    where = ("input", "projectId")
    # The assignee's membership is key-share locked: a concurrent removeMember waits for this
    # transaction, and then unassigns the new task as well.
    assignee_ok: Any = literal(True)
    if assignee_id is not None:
        assignee_ok = (
            select(M.c.user_id)
            .where(M.c.workspace_id == P.c.workspace_id, M.c.user_id == assignee_id)
            .with_for_update(read=True, key_share=True)
            .exists()
        )
    project = (
        await session.execute(
            select(P, assignee_ok.label("assignee_ok")).where(
                P.c.id == project_id, any_id(P.c.workspace_id, principal.readable_workspace_ids)
            )
        )
    ).first()
    if project is None:
        raise reject("Project not found.", ProblemCode.NOT_FOUND, *where)
    require_task_editor(principal, project.workspace_id, "Project", where)

    problems = _title_problems(title) + _description_problems(description)
    if project.archived_at is not None:
        problems.append(Problem("The project is archived.", ProblemCode.INVALID, where))
    if not project.assignee_ok:
        problems.append(
            Problem(
                "The assignee must be a member of the workspace.",
                ProblemCode.INVALID,
                ("input", "assigneeId"),
            )
        )
    labels = (
        await _workspace_labels(session, project.workspace_id, label_ids) if not problems else []
    )
    problems += _missing_labels(labels, label_ids)
    if problems:
        raise Rejected(problems)

    # The row lock taken by this UPDATE serialises concurrent creators of the project, so
    # every one of them gets its own number.
    number = (
        await session.execute(
            update(P)
            .where(P.c.id == project_id, P.c.archived_at.is_(None))
            .values(next_task_number=P.c.next_task_number + 1)
            .returning((P.c.next_task_number - 1).label("number"))
        )
    ).scalar_one_or_none()
    if number is None:
        raise reject("The project is archived.", ProblemCode.INVALID, *where)
    # A separate statement on purpose: under READ COMMITTED it takes its snapshot after the
    # lock above was granted, so it sees the task the previous creator committed.
    end = (
        select(func.coalesce(func.max(T.c.position), 0.0) + POSITION_STEP)
        .where(T.c.project_id == project_id)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            insert(T)
            .values(
                workspace_id=project.workspace_id,
                project_id=project_id,
                number=number,
                title=title.strip(),
                description=description,
                status=status.value,
                priority=int(priority),
                due_date=due_date,
                assignee_id=assignee_id,
                creator_id=_creator(principal),
                position=end,
                completed_at=func.now() if status in CLOSED else None,
            )
            .returning(T)
        )
    ).one()
    await _link_labels(session, row.id, label_ids)

    changes = [
        change("title", None, row.title),
        change("status", None, status),
        change("priority", None, priority),
    ]
    if description:
        changes.append(change("description", None, description))
    if due_date is not None:
        changes.append(change("dueDate", None, due_date))
    if assignee_id is not None:
        changes.append(change("assigneeId", None, assignee_id))
    if labels:
        changes.append(change("labels", None, _names(labels)))
    await activities.record(
        session,
        principal,
        workspace_id=row.workspace_id,
        project_id=project_id,
        task_id=row.id,
        task_key=wire.task_key(project.key, number),
        kind=ActivityKind.TASK_CREATED,
        changes=changes,
    )
    return CreatedTask(row, project, labels)


async def _lock_task(
    session: AsyncSession,
    principal: Principal,
    task_id: int,
    where: tuple[str, ...],
    *,
    with_labels: bool = False,
    deleting: bool = False,
) -> Any:
    """The task, row-locked for the rest of the transaction, with its project's key (and
    optionally its labels' ids and names); NOT_FOUND / FORBIDDEN as user errors.

    Changes take FOR NO KEY UPDATE, which still lets comments (whose foreign key takes a
    key-share lock) be added meanwhile; only deletion needs FOR UPDATE."""
    columns: list[Any] = [T, P.c.key.label("project_key")]
    if with_labels:
        for column, name in ((L.c.id, "label_ids"), (L.c.name, "label_names")):
            ordered = aggregate_order_by(column, *label_order(L.c))
            labels = (
                select(func.array_agg(ordered))
                .select_from(TL.join(L, L.c.id == TL.c.label_id))
                .where(TL.c.task_id == T.c.id)
                .scalar_subquery()
            )
            columns.append(labels.label(name))
    row = (
        await session.execute(
            select(*columns)
            .join(P, P.c.id == T.c.project_id)
            .where(T.c.id == task_id, any_id(T.c.workspace_id, principal.readable_workspace_ids))
            .with_for_update(of=T, key_share=not deleting)
        )
    ).first()
    if row is None:
        raise reject("Task not found.", ProblemCode.NOT_FOUND, *where)
    require_task_editor(principal, row.workspace_id, "Task", where)
    return row


def _key(row: Any) -> str:
    return wire.task_key(row.project_key, row.number)


def _update_problems(changes: TaskChanges) -> list[Problem]:
    problems: list[Problem] = []
    for name in ("title", "description", "status", "priority"):
        if getattr(changes, name) is None:
            problems.append(
                Problem(f"{name} cannot be null.", ProblemCode.INVALID, ("input", name))
            )
    if isinstance(changes.title, str):
        problems += _title_problems(changes.title)
    if isinstance(changes.description, str):
        problems += _description_problems(changes.description)
    return problems


async def update_task(
    session: AsyncSession, principal: Principal, task_id: int, changes: TaskChanges
) -> Any:
    """Apply a partial update; returns the task row (unchanged when nothing changed).

    A change bumps `version` by one and writes one TASK_UPDATED activity with an entry per
    changed field (assigneeId as the user's database id). A no-op writes nothing.
    """
    problems = _update_problems(changes)
    if problems:
        raise Rejected(problems)
    where = ("input", "id")
    assignee_ok = True
    if isinstance(changes.assignee_id, int):
        # Key-share locked before the task row, so that locks are always taken in the order
        # membership -> project -> task: a removeMember that deletes the membership and then
        # unassigns the member's tasks waits for this transaction instead of deadlocking.
        assignee_ok = (
            await session.execute(
                select(M.c.user_id)
                .join(T, T.c.workspace_id == M.c.workspace_id)
                .where(T.c.id == task_id, M.c.user_id == changes.assignee_id)
                .with_for_update(read=True, key_share=True, of=M)
            )
        ).first() is not None
    placing = changes.after_task_id is not None or changes.before_task_id is not None
    if placing:
        # Placements of one project are serialised on the project row (as creations are),
        # so that two of them never pick the same gap and rebalances do not interleave.
        await session.execute(
            select(P.c.id)
            .where(
                P.c.id
                == select(T.c.project_id)
                .where(
                    T.c.id == task_id, any_id(T.c.workspace_id, principal.readable_workspace_ids)
                )
                .scalar_subquery()
            )
            .with_for_update(key_share=True)
        )
    before = await _lock_task(session, principal, task_id, where)
    if changes.expected_version is not None and changes.expected_version != before.version:
        raise reject(
            f"The task was changed meanwhile (now version {before.version}); reload and retry.",
            ProblemCode.STALE,
            "input",
            "expectedVersion",
        )
    if not assignee_ok:
        problems.append(
            Problem(
                "The assignee must be a member of the workspace.",
                ProblemCode.INVALID,
                ("input", "assigneeId"),
            )
        )
    position = None
    if placing:
        try:
            position = await placement(
                session, before, changes.after_task_id, changes.before_task_id
            )
        except Rejected as rejected:
            problems += rejected.problems
    if problems:
        raise Rejected(problems)

    values: dict[str, Any] = {}
    entries: list[dict[str, str | None]] = []

    def compare(
        api_name: str, column: str, new: Any, old: Any, shown_old: Any, shown_new: Any
    ) -> None:
        if new != old:
            values[column] = new
            entries.append(change(api_name, shown_old, shown_new))

    if isinstance(changes.title, str):
        title = changes.title.strip()
        compare("title", "title", title, before.title, before.title, title)
    if isinstance(changes.description, str):
        d = changes.description
        compare("description", "description", d, before.description, before.description, d)
    if isinstance(changes.status, TaskStatus):
        old_status = TaskStatus(before.status)
        compare("status", "status", changes.status.value, before.status, old_status, changes.status)
        if "status" in values:
            if changes.status in CLOSED and old_status not in CLOSED:
                values["completed_at"] = func.now()
            elif changes.status not in CLOSED and old_status in CLOSED:
                values["completed_at"] = None
    if isinstance(changes.priority, TaskPriority):
        old_priority = TaskPriority(before.priority)
        new_priority = changes.priority
        compare(
            "priority", "priority", int(new_priority), before.priority, old_priority, new_priority
        )
    if not isinstance(changes.due_date, Keep):
        due = changes.due_date
        compare("dueDate", "due_date", due, before.due_date, before.due_date, due)
    if not isinstance(changes.assignee_id, Keep):
        a = changes.assignee_id
        compare("assigneeId", "assignee_id", a, before.assignee_id, before.assignee_id, a)
    if position is not None:
        compare("position", "position", position, before.position, before.position, position)

    if not values:
        return before
    row = (
        await session.execute(
            update(T)
            .where(T.c.id == task_id)
            .values(**values, version=T.c.version + 1, updated_at=func.now())
            .returning(T)
        )
    ).one()
    await activities.record_for(
        session,
        principal,
        row,
        _key(before),
        ActivityKind.TASK_UPDATED,
        entries,
    )
    return row


async def delete_task(session: AsyncSession, principal: Principal, task_id: int) -> Any:
    """Delete a task with its comments and label links (foreign keys cascade). Its activity
    rows stay, keyed by the old task id and key, with a final TASK_DELETED entry."""
    row = await _lock_task(session, principal, task_id, ("input", "id"), deleting=True)
    await session.execute(delete(T).where(T.c.id == task_id))
    await activities.record_for(
        session,
        principal,
        row,
        _key(row),
        ActivityKind.TASK_DELETED,
        [change("title", row.title, None)],
    )
    return row


async def _labels_changed(
    session: AsyncSession, principal: Principal, task: Any, before: str, after: str
) -> Any:
    """Bump the version of a task whose labels changed and record it."""
    row = (
        await session.execute(
            update(T)
            .where(T.c.id == task.id)
            .values(version=T.c.version + 1, updated_at=func.now())
            .returning(T)
        )
    ).one()
    await activities.record_for(
        session,
        principal,
        row,
        _key(task),
        ActivityKind.LABELS_CHANGED,
        [change("labels", before or None, after or None)],
    )
    return row


async def _labels_of_task_workspace(
    session: AsyncSession, principal: Principal, task_id: int, label_ids: Sequence[int]
) -> list[Any]:
    # Read (and key-share locked) before the task row is locked, in the same lock order as
    # createTask: labels, then project/task.
    workspace = (
        select(T.c.workspace_id)
        .where(T.c.id == task_id, any_id(T.c.workspace_id, principal.readable_workspace_ids))
        .scalar_subquery()
    )
    return await _workspace_labels(session, workspace, label_ids)


async def add_labels_to_task(
    session: AsyncSession, principal: Principal, task_id: int, label_ids: Sequence[int]
) -> Any:
    """Add labels; those already on the task are skipped. Nothing new: no version bump and
    no activity."""
    label_ids = _unique_label_ids(label_ids)
    labels = await _labels_of_task_workspace(session, principal, task_id, label_ids)
    task = await _lock_task(session, principal, task_id, ("input", "taskId"), with_labels=True)
    problems = _missing_labels(labels, label_ids)
    if problems:
        raise Rejected(problems)
    added = set(await _link_labels(session, task_id, label_ids))
    if not added:
        return task
    current = [
        _Named(i, n) for i, n in zip(task.label_ids or [], task.label_names or [], strict=True)
    ]
    now = current + [label for label in labels if label.id in added]
    return await _labels_changed(session, principal, task, _names(current), _names(now))


async def remove_labels_from_task(
    session: AsyncSession, principal: Principal, task_id: int, label_ids: Sequence[int]
) -> Any:
    """Remove labels; those not on the task are skipped. Nothing removed: no version bump
    and no activity."""
    label_ids = _unique_label_ids(label_ids)
    labels = await _labels_of_task_workspace(session, principal, task_id, label_ids)
    task = await _lock_task(session, principal, task_id, ("input", "taskId"), with_labels=True)
    problems = _missing_labels(labels, label_ids)
    if problems:
        raise Rejected(problems)
    if not label_ids:
        return task
    removed = set(
        (
            await session.execute(
                delete(TL)
                .where(TL.c.task_id == task_id, any_id(TL.c.label_id, label_ids))
                .returning(TL.c.label_id)
            )
        ).scalars()
    )
    if not removed:
        return task
    current = [
        _Named(i, n) for i, n in zip(task.label_ids or [], task.label_names or [], strict=True)
    ]
    now = [label for label in current if label.id not in removed]
    return await _labels_changed(session, principal, task, _names(current), _names(now))
