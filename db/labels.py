"""Labels: their order, commands and read description."""

from __future__ import annotations

from typing import Any

from sqlalchemy import any_, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities, validation, wire
from db.descriptions import NodeType, One, global_id, value
from db.models import ActivityKind, Label, Project, Task, TaskLabel
from db.permissions import require_admin
from db.principals import Principal
from db.problems import Problem, ProblemCode, Rejected, reject

L = Label.__table__


def label_order(c: Any) -> tuple[Any, Any]:
    """Labels are listed by name, case-insensitively, then by id: in SQL over a label row's
    columns `c`, and in Python (`label_sort_key`) for lists built in code."""
    return func.lower(c.name), c.id


def label_sort_key(row: Any) -> tuple[str, int]:
    return row.name.lower(), row.id


T = Task.__table__
P = Project.__table__
TL = TaskLabel.__table__


# Commands. Labels are managed by workspace admins.

NAME_MAX = 100


def _problems(name: str | None, color: str | None) -> list[Problem]:
    problems: list[Problem] = []
    if name is not None:
        problems += validation.length(
            name, ("input", "name"), minimum=1, maximum=NAME_MAX, label="Name"
        )
    if color is not None:
        problems += validation.color(color, ("input", "color"))
    return problems


def _taken() -> Rejected:
    return reject(
        "A label with this name already exists in the workspace.",
        ProblemCode.TAKEN,
        "input",
        "name",
    )


async def create_label(
    session: AsyncSession, principal: Principal, workspace_id: int, name: str, color: str
) -> Any:
    require_admin(principal, workspace_id, "Workspace", ("input", "workspaceId"))
    if problems := _problems(name, color):
        raise Rejected(problems)
    # The unique index on (workspace_id, lower(name)) settles concurrent creations.
    row = (
        await session.execute(
            pg_insert(L)
            .values(workspace_id=workspace_id, name=name.strip(), color=color.lower())
            .on_conflict_do_nothing(index_elements=[L.c.workspace_id, func.lower(L.c.name)])
            .returning(L)
        )
    ).first()
    if row is None:
        raise _taken()
    return row


async def _locked_label(session: AsyncSession, principal: Principal, label_id: int) -> Any:
    row = (await session.execute(select(L).where(L.c.id == label_id).with_for_update())).first()
    if row is None or not principal.can_read(row.workspace_id):
        raise reject("Label not found.", ProblemCode.NOT_FOUND, "input", "id")
    require_admin(principal, row.workspace_id, "Label", ("input", "id"))
    return row


async def update_label(
    session: AsyncSession,
    principal: Principal,
    label_id: int,
    *,
    name: str | None = None,
    color: str | None = None,
) -> Any:
    """Rename and/or recolour; None leaves a field as it is."""
    row = await _locked_label(session, principal, label_id)
    if problems := _problems(name, color):
        raise Rejected(problems)
    values: dict[str, Any] = {}
    if name is not None and name.strip() != row.name:
        values["name"] = name.strip()
    if color is not None and color.lower() != row.color:
        values["color"] = color.lower()
    if not values:
        return row
    try:
        async with session.begin_nested():
            return (
                await session.execute(
                    update(L).where(L.c.id == label_id).values(**values).returning(L)
                )
            ).one()
    except IntegrityError:
        raise _taken() from None


async def delete_label(session: AsyncSession, principal: Principal, label_id: int) -> Any:
    """Delete a label, taking it off every task; each such task records the change in its
    history and counts it as a change (version)."""
    row = await _locked_label(session, principal, label_id)
    carrying = select(TL.c.task_id).where(TL.c.label_id == label_id).scalar_subquery()

    def names(*where: Any) -> Any:
        ordered = aggregate_order_by(literal_column("', '"), func.lower(L.c.name), L.c.id)
        return (
            select(func.string_agg(L.c.name, ordered))
            .select_from(TL.join(L, L.c.id == TL.c.label_id))
            .where(TL.c.task_id == T.c.id, *where)
            .scalar_subquery()
        )

    # One statement: bump the affected tasks and read what their history needs.
    affected = (
        await session.execute(
            update(T)
            .where(T.c.id.in_(carrying))
            .values(version=T.c.version + 1, updated_at=func.now())
            .returning(
                T.c.id,
                T.c.workspace_id,
                T.c.project_id,
                T.c.number,
                select(P.c.key).where(P.c.id == T.c.project_id).scalar_subquery().label("key"),
                names().label("before"),
                names(L.c.id != label_id).label("after"),
            )
        )
    ).all()
    await session.execute(delete(L).where(L.c.id == label_id))
    for task in affected:
        await activities.record_for(
            session,
            principal,
            task,
            wire.task_key(task.key, task.number),
            ActivityKind.LABELS_CHANGED,
            [activities.change("labels", task.before, task.after)],
        )
    return row


# ---------------------------------------------------------------- read description

LABEL = NodeType(
    "Label",
    lambda: select(L),
    {
        "id": global_id("Label"),
        "name": value("name"),
        "color": value("color"),
        "workspace": One(
            "Workspace", lambda w, parent, p, args, param: [w.id == parent.workspace_id]
        ),
    },
    visible=lambda c, p: c.workspace_id == any_(p.readable),
)
