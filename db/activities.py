"""The activity history of tasks: reads."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from sqlalchemy import any_, column, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import wire
from db.descriptions import Columns, Many, NodeType, One, Param, global_id, timestamp, value
from db.models import Activity, ActivityKind
from db.pagination import SortKey
from db.principals import Principal, PrincipalSQL

A = Activity.__table__

# Newest first, like a feed.
ACTIVITY_KEYS = (
    SortKey("created", A.c.created_at, "datetime", descending=True),
    SortKey("id", A.c.id, "int", descending=True),
)


def change(field: str, before: object, after: object) -> dict[str, str | None]:
    """One entry of `activities.changes`; values are kept as strings (or null)."""
    return {"field": field, "from": _text(before), "to": _text(after)}


def _text(value: object) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    if isinstance(value, enum.Enum):
        return str(value.name)
    return str(value)


async def record(
    session: AsyncSession,
    principal: Principal,
    *,
    workspace_id: int,
    project_id: int,
    task_id: int,
    task_key: str,
    kind: ActivityKind,
    changes: Sequence[dict[str, str | None]] = (),
) -> None:
    """Write the history entry of a task change, in the caller's transaction.

    This is the one place every task change passes through; live updates will hook in here.
    """
    await session.execute(
        insert(A).values(
            workspace_id=workspace_id,
            project_id=project_id,
            task_id=task_id,
            task_key=task_key,
            kind=kind.value,
            actor_user_id=principal.user_id,
            actor_api_key_id=principal.api_key_id,
            changes=list(changes),
        )
    )


async def record_for(
    session: AsyncSession,
    principal: Principal,
    task: Any,
    task_key: str,
    kind: ActivityKind,
    changes: Sequence[dict[str, str | None]] = (),
) -> None:
    """`record` for a task row (anything with `id`, `workspace_id` and `project_id`)."""
    await record(
        session,
        principal,
        workspace_id=task.workspace_id,
        project_id=task.project_id,
        task_id=task.id,
        task_key=task_key,
        kind=kind,
        changes=changes,
    )


# ---------------------------------------------------------------- read description


def _changes(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Any:
    entries = (
        func.jsonb_array_elements(parent.changes)
        .table_valued(column("value"), with_ordinality="n")
        .render_derived()
    )
    entry = entries.c.value
    return select(
        *(entry.op("->>")(wire.sql_string(key)).label(key) for key in ("field", "from", "to")),
        entries.c.n,
    ).select_from(entries)


FIELD_CHANGE = NodeType(
    "FieldChange", None, {"field": value("field"), "from_": value("from"), "to": value("to")}
)

ACTIVITY = NodeType(
    "Activity",
    lambda: select(A),
    {
        "id": global_id("Activity"),
        "kind": value("kind"),
        "task_key": value("task_key"),
        "created_at": timestamp("created_at"),
        "changes": Many("FieldChange", lambda c: (c.n,), rows=_changes),
        "actor": One("User", lambda u, parent, p, args, param: [u.id == parent.actor_user_id]),
        # The key that acted, for the workspace's admins (the API key's own visibility).
        "api_key": One(
            "ApiKey",
            lambda k, parent, p, args, param: [
                k.id == parent.actor_api_key_id,
                k.workspace_id == any_(p.manageable),
            ],
        ),
        # Null once the task has been deleted.
        "task": One(
            "Task",
            lambda t, parent, p, args, param: [
                t.id == parent.task_id,
                t.workspace_id == any_(p.readable),
            ],
        ),
    },
    visible=lambda c, p: c.workspace_id == any_(p.readable),
)
