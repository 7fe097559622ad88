"""Test data made with plain SQL through the session under test (fast, no GraphQL)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.accounts import hash_password
from db.models import (
    Activity,
    ApiScope,
    Comment,
    Label,
    Membership,
    Project,
    Role,
    Task,
    TaskLabel,
    User,
)

PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)
_seq = itertools.count(1)
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_seq)}"


@dataclass
class World:
    """Two workspaces with members of every role, projects, tasks, labels and comments."""

    users: dict[str, Any]
    workspace: Any
    other_workspace: Any
    project: Any
    other_project: Any
    tasks: list[Any]
    other_task: Any
    labels: list[Any]
    other_label: Any


async def user(session: AsyncSession, name: str | None = None, email: str | None = None) -> Any:
    name = name or unique("user")
    email = email or f"{name}-{next(_seq)}@example.com"
    stmt = (
        insert(User).values(email=email, name=name, password_hash=_HASH).returning(User.__table__)
    )
    return (await session.execute(stmt)).one()


async def workspace(session: AsyncSession, slug: str | None = None, name: str = "Acme") -> Any:
    from db.models import Workspace

    stmt = (
        insert(Workspace)
        .values(slug=slug or unique("ws-"), name=name)
        .returning(Workspace.__table__)
    )
    return (await session.execute(stmt)).one()


async def member(session: AsyncSession, workspace_id: int, user_id: int, role: Role) -> None:
    await session.execute(
        insert(Membership).values(workspace_id=workspace_id, user_id=user_id, role=role.value)
    )


async def project(session: AsyncSession, workspace_id: int, key: str, **values: Any) -> Any:
    stmt = (
        insert(Project)
        .values(
            workspace_id=workspace_id, key=key, name=values.pop("name", f"Project {key}"), **values
        )
        .returning(Project.__table__)
    )
    return (await session.execute(stmt)).one()


async def task(
    session: AsyncSession, proj: Any, creator_id: int, number: int | None = None, **values: Any
) -> Any:
    if number is None:
        number = (
            await session.execute(
                update(Project)
                .where(Project.id == proj.id)
                .values(next_task_number=Project.next_task_number + 1)
                .returning(Project.next_task_number)
            )
        ).scalar_one() - 1
    values.setdefault("title", f"Task {number}")
    values.setdefault("position", number * 1024.0)
    # Creation order is insertion order, across projects too.
    values.setdefault("created_at", BASE_TIME + timedelta(minutes=next(_seq)))
    values.setdefault("updated_at", values["created_at"])
    stmt = (
        insert(Task)
        .values(
            workspace_id=proj.workspace_id,
            project_id=proj.id,
            number=number,
            creator_id=creator_id,
            **values,
        )
        .returning(Task.__table__)
    )
    return (await session.execute(stmt)).one()


async def label(session: AsyncSession, workspace_id: int, name: str, color: str = "#d73a4a") -> Any:
    stmt = (
        insert(Label)
        .values(workspace_id=workspace_id, name=name, color=color)
        .returning(Label.__table__)
    )
    return (await session.execute(stmt)).one()


async def tag(session: AsyncSession, task_id: int, *label_ids: int) -> None:
    for label_id in label_ids:
        await session.execute(insert(TaskLabel).values(task_id=task_id, label_id=label_id))


async def comment(
    session: AsyncSession, task_id: int, author_id: int, body: str = "Looks good", minute: int = 0
) -> Any:
    stmt = (
        insert(Comment)
        .values(
            task_id=task_id,
            author_id=author_id,
            body=body,
            created_at=BASE_TIME + timedelta(days=1, minutes=minute),
        )
        .returning(Comment.__table__)
    )
    return (await session.execute(stmt)).one()


async def activity(session: AsyncSession, t: Any, key: str, actor_id: int, minute: int = 0) -> Any:
    stmt = (
        insert(Activity)
        .values(
            workspace_id=t.workspace_id,
            project_id=t.project_id,
            task_id=t.id,
            task_key=key,
            kind="TASK_CREATED",
            actor_user_id=actor_id,
            changes=[{"field": "title", "from": None, "to": t.title}],
            created_at=BASE_TIME + timedelta(minutes=minute),
        )
        .returning(Activity.__table__)
    )
    return (await session.execute(stmt)).one()


async def world(session: AsyncSession) -> World:
    users = {
        name: await user(session, name)
        for name in ("owner", "admin", "member", "viewer", "outsider")
    }
    ws = await workspace(session, unique("acme-"), "Acme")
    other = await workspace(session, unique("globex-"), "Globex")
    for name, role in (
        ("owner", Role.OWNER),
        ("admin", Role.ADMIN),
        ("member", Role.MEMBER),
        ("viewer", Role.VIEWER),
    ):
        await member(session, ws.id, users[name].id, role)
    await member(session, other.id, users["outsider"].id, Role.OWNER)
    proj = await project(session, ws.id, "ENG", name="Engineering")
    other_proj = await project(session, other.id, "OPS", name="Operations")
    labels = [await label(session, ws.id, n) for n in ("bug", "feature", "urgent")]
    other_label = await label(session, other.id, "secret")
    tasks = []
    for i in range(5):
        t = await task(
            session,
            proj,
            users["owner"].id,
            assignee_id=users["member"].id if i % 2 == 0 else None,
            due_date=date(2026, 12, 1) + timedelta(days=i) if i < 3 else None,
            priority=i % 5,
            status=["TODO", "IN_PROGRESS", "DONE", "BACKLOG", "TODO"][i],
            completed_at=BASE_TIME if i == 2 else None,
        )
        tasks.append(t)
    await tag(session, tasks[0].id, labels[0].id, labels[1].id)
    await tag(session, tasks[1].id, labels[0].id)
    other_task = await task(session, other_proj, users["outsider"].id)
    await session.flush()
    return World(users, ws, other, proj, other_proj, tasks, other_task, labels, other_label)


async def api_key(
    session: AsyncSession, workspace_id: int, admin_id: int, scopes: set[ApiScope]
) -> Any:
    """A new API key of the workspace, made by one of its admins (`.row`, `.secret`)."""
    from db.api_keys import create_api_key
    from db.principals import Principal

    admin = Principal(user_id=admin_id, roles=MappingProxyType({workspace_id: Role.ADMIN}))
    created = await create_api_key(session, admin, workspace_id, unique("key"), sorted(scopes))
    return created
