"""Comments: sort keys, commands and read description."""

from __future__ import annotations

from typing import Any

from sqlalchemy import any_, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities, validation, wire
from db.descriptions import NodeType, One, global_id, timestamp, value
from db.models import ActivityKind, Comment, Project, Task, User
from db.pagination import SortKey
from db.permissions import require_task_editor
from db.principals import Principal
from db.problems import Problem, ProblemCode, Rejected, reject

C = Comment.__table__
U = User.__table__
T = Task.__table__
P = Project.__table__

# Oldest first, like a conversation.
COMMENT_KEYS = (SortKey("created", C.c.created_at, "datetime"), SortKey("id", C.c.id, "int"))


# Commands. Members (and WRITE keys) comment; authors edit their own comments; authors and
# workspace admins delete them.

BODY_MAX = 20_000
# Long bodies are shortened in the history: it records that a comment changed, it is not a
# second copy of every version.
HISTORY_BODY_MAX = 200


def _body_problems(body: str) -> list[Problem]:
    return validation.length(body, ("input", "body"), minimum=1, maximum=BODY_MAX, label="Body")


def _short(body: str | None) -> str | None:
    if body is None or len(body) <= HISTORY_BODY_MAX:
        return body
    return body[: HISTORY_BODY_MAX - 1] + "…"


async def _task(session: AsyncSession, principal: Principal, task_id: int, field: str) -> Any:
    stmt = (
        select(T.c.id, T.c.workspace_id, T.c.project_id, T.c.number, P.c.key)
        .join(P, P.c.id == T.c.project_id)
        .where(T.c.id == task_id)
    )
    row = (await session.execute(stmt)).first()
    if row is None or not principal.can_read(row.workspace_id):
        raise reject("Task not found.", ProblemCode.NOT_FOUND, "input", field)
    return row


async def _record(
    session: AsyncSession,
    principal: Principal,
    task: Any,
    kind: ActivityKind,
    before: str | None,
    after: str | None,
) -> None:
    await activities.record_for(
        session,
        principal,
        task,
        wire.task_key(task.key, task.number),
        kind,
        [activities.change("body", _short(before), _short(after))],
    )


async def add_comment(session: AsyncSession, principal: Principal, task_id: int, body: str) -> Any:
    task = await _task(session, principal, task_id, "taskId")
    require_task_editor(principal, task.workspace_id, "Task", ("input", "taskId"))
    if problems := _body_problems(body):
        raise Rejected(problems)
    row = (
        await session.execute(
            insert(C)
            .values(task_id=task.id, author_id=principal.acting_user_id, body=body)
            .returning(C)
        )
    ).one()
    await _record(session, principal, task, ActivityKind.COMMENT_ADDED, None, body)
    return row


async def _own_comment(
    session: AsyncSession, principal: Principal, comment_id: int, *, moderate: bool
) -> tuple[Any, Any]:
    """The comment (locked) and its task, if the principal may change it: its author (for an
    API key, the key's creator) with editing rights, or, when `moderate`, a workspace admin."""
    row = (await session.execute(select(C).where(C.c.id == comment_id).with_for_update())).first()
    task = await _task(session, principal, row.task_id, "id") if row is not None else None
    if row is None or task is None:
        raise reject("Comment not found.", ProblemCode.NOT_FOUND, "input", "id")
    require_task_editor(principal, task.workspace_id, "Comment", ("input", "id"))
    own = row.author_id == principal.acting_user_id
    if not own and not (moderate and principal.can_manage(task.workspace_id)):
        raise reject(
            "Only the author may change this comment.", ProblemCode.FORBIDDEN, "input", "id"
        )
    return row, task


async def update_comment(
    session: AsyncSession, principal: Principal, comment_id: int, body: str
) -> Any:
    row, task = await _own_comment(session, principal, comment_id, moderate=False)
    if problems := _body_problems(body):
        raise Rejected(problems)
    if body == row.body:
        return row
    updated = (
        await session.execute(
            update(C)
            .where(C.c.id == comment_id)
            .values(body=body, updated_at=func.now())
            .returning(C)
        )
    ).one()
    await _record(session, principal, task, ActivityKind.COMMENT_UPDATED, row.body, body)
    return updated


async def delete_comment(session: AsyncSession, principal: Principal, comment_id: int) -> Any:
    row, task = await _own_comment(session, principal, comment_id, moderate=True)
    await session.execute(delete(C).where(C.c.id == comment_id))
    await _record(session, principal, task, ActivityKind.COMMENT_DELETED, row.body, None)
    return row


# ---------------------------------------------------------------- read description

COMMENT = NodeType(
    "Comment",
    lambda: select(C),
    {
        "id": global_id("Comment"),
        "body": value("body"),
        "created_at": timestamp("created_at"),
        "updated_at": timestamp("updated_at"),
        "author": One("User", lambda u, parent, p, args, param: [u.id == parent.author_id]),
        "task": One(
            "Task",
            lambda t, parent, p, args, param: [
                t.id == parent.task_id,
                t.workspace_id == any_(p.readable),
            ],
        ),
    },
    visible=lambda c, p: exists().where(T.c.id == c.task_id, T.c.workspace_id == any_(p.readable)),
)
