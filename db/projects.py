"""Projects: sort keys, commands and read description."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import prepared, tasks, validation, wire
from db.descriptions import Columns, NodeType, One, Param, global_id, timestamp, value
from db.models import Project, Task, TaskStatus
from db.pagination import SortKey
from db.permissions import require_admin
from db.principals import Principal, PrincipalSQL
from db.problems import Problem, ProblemCode, Rejected, reject

P = Project.__table__
T = Task.__table__

PROJECT_KEYS = (SortKey("key", P.c.key, "str"),)


# Commands. Projects are managed by workspace admins (users, not API keys).

NAME_MAX = 100
DESCRIPTION_MAX = 50_000


def _name_problems(name: str) -> list[Problem]:
    return validation.length(name, ("input", "name"), minimum=1, maximum=NAME_MAX, label="Name")


def _description_problems(description: str) -> list[Problem]:
    return validation.length(
        description,
        ("input", "description"),
        minimum=0,
        maximum=DESCRIPTION_MAX,
        label="Description",
        strip=False,
    )


async def create_project(
    session: AsyncSession,
    principal: Principal,
    workspace_id: int,
    key: str,
    name: str,
    description: str,
) -> Any:
    require_admin(principal, workspace_id, "Workspace", ("input", "workspaceId"))
    problems = (
        validation.project_key(key, ("input", "key"))
        + _name_problems(name)
        + _description_problems(description)
    )
    if problems:
        raise Rejected(problems)
    # The unique constraint settles concurrent creations of the same key.
    row = (
        await session.execute(
            pg_insert(P)
            .values(workspace_id=workspace_id, key=key, name=name.strip(), description=description)
            .on_conflict_do_nothing(index_elements=[P.c.workspace_id, P.c.key])
            .returning(P)
        )
    ).first()
    if row is None:
        raise reject("This key is taken in the workspace.", ProblemCode.TAKEN, "input", "key")
    return row


def _workspace_of() -> Any:
    return select(P.c.workspace_id).where(P.c.id == bindparam("project_id", type_=BigInteger))


async def workspace_of(pooled: prepared.Pooled, project_id: int) -> int | None:
    """The workspace of a project, or None when there is no such project."""
    rows = await pooled.rows(
        prepared.shape("projects.workspace_of", _workspace_of), project_id=project_id
    )
    return rows[0].workspace_id if rows else None


async def _locked_project(session: AsyncSession, principal: Principal, project_id: int) -> Any:
    row = (await session.execute(select(P).where(P.c.id == project_id).with_for_update())).first()
    if row is None or not principal.can_read(row.workspace_id):
        raise reject("Project not found.", ProblemCode.NOT_FOUND, "input", "id")
    require_admin(principal, row.workspace_id, "Project", ("input", "id"))
    return row


async def update_project(
    session: AsyncSession,
    principal: Principal,
    project_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Change the name and/or description; None leaves a field as it is. The key is fixed:
    it is part of every task key."""
    row = await _locked_project(session, principal, project_id)
    problems = (_name_problems(name) if name is not None else []) + (
        _description_problems(description) if description is not None else []
    )
    if problems:
        raise Rejected(problems)
    values: dict[str, Any] = {}
    if name is not None and name.strip() != row.name:
        values["name"] = name.strip()
    if description is not None and description != row.description:
        values["description"] = description
    if not values:
        return row
    stmt = update(P).where(P.c.id == project_id).values(**values, updated_at=func.now())
    return (await session.execute(stmt.returning(P))).one()


async def archive_project(
    session: AsyncSession, principal: Principal, project_id: int, archived: bool
) -> Any:
    row = await _locked_project(session, principal, project_id)
    if (row.archived_at is not None) == archived:
        return row
    stmt = (
        update(P)
        .where(P.c.id == project_id)
        .values(archived_at=func.now() if archived else None, updated_at=func.now())
    )
    return (await session.execute(stmt.returning(P))).one()


# ---------------------------------------------------------------- read description

_STATUS_COUNTS = {
    "backlog": TaskStatus.BACKLOG,
    "todo": TaskStatus.TODO,
    "in_progress": TaskStatus.IN_PROGRESS,
    "in_review": TaskStatus.IN_REVIEW,
    "done": TaskStatus.DONE,
    "canceled": TaskStatus.CANCELED,
}


def _task_counts(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Any:
    counts = [
        func.count().filter(T.c.status == wire.sql_string(status.value)).label(name)
        for name, status in _STATUS_COUNTS.items()
    ]
    return select(*counts, func.count().label("total")).where(T.c.project_id == parent.id)


TASK_COUNTS = NodeType(
    "TaskCounts", None, {name: value(name) for name in (*_STATUS_COUNTS, "total")}
)

PROJECT = NodeType(
    "Project",
    lambda: select(P),
    {
        "id": global_id("Project"),
        "key": value("key"),
        "name": value("name"),
        "description": value("description"),
        "archived_at": timestamp("archived_at"),
        "created_at": timestamp("created_at"),
        "updated_at": timestamp("updated_at"),
        "workspace": One(
            "Workspace",
            lambda w, parent, p, args, param: [
                w.id == parent.workspace_id,
                w.id == any_(p.readable),
            ],
        ),
        "tasks": tasks.task_list("project_id", tasks.PROJECT_TASK_ORDER),
        "task_counts": One("TaskCounts", rows=_task_counts),
    },
    visible=lambda c, p: c.workspace_id == any_(p.readable),
)
