"""The activity history of tasks: reads."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    any_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from db import live_events, wire
from db.descriptions import (
    Arguments,
    Columns,
    Many,
    NodeType,
    One,
    Param,
    Value,
    global_id,
    timestamp,
    value,
)
from db.models import EVENT_KIND_OF, Activity, ActivityKind
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

    This is the one place every task change passes through: the same statement sends the
    change's live-event notice, which PostgreSQL delivers when the transaction commits
    (`db.live_events`).
    """
    inserted = (
        insert(A)
        .values(
            workspace_id=workspace_id,
            project_id=project_id,
            task_id=task_id,
            task_key=task_key,
            kind=kind.value,
            actor_user_id=principal.user_id,
            actor_api_key_id=principal.api_key_id,
            changes=list(changes),
        )
        .returning(A.c.id, A.c.workspace_id, A.c.project_id, A.c.task_id)
        .cte("inserted")
    )
    await session.execute(select(live_events.task_notice_sql(inserted.c)))


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


# ---------------------------------------------------------------- live events
#
# A task event (`Subscription.taskEvents`) is an activity row seen as what happened to the
# task: read, like every other read, through the one statement of the read path, for one
# activity row (`EVENT_PARAM`) at a time.

EVENT_PARAM = "tg_event"


def _event_kind(c: Columns, p: PrincipalSQL) -> Any:
    return case({k.value: wire.sql_string(e.value) for k, e in EVENT_KIND_OF.items()}, value=c.kind)


def _changed_fields(c: Columns, p: PrincipalSQL) -> Any:
    entries = (
        func.jsonb_array_elements(c.changes)
        .table_valued(column("value"), with_ordinality="n")
        .render_derived()
    )
    names = func.json_agg(
        aggregate_order_by(entries.c.value.op("->>")(wire.sql_string("field")), entries.c.n)
    )
    return (
        select(func.coalesce(names, literal_column("'[]'::json")))
        .select_from(entries)
        .scalar_subquery()
    )


TASK_EVENT = NodeType(
    "TaskEvent",
    lambda: select(A),
    {
        "kind": Value(_event_kind),
        "task_id": value("task_id", lambda v: wire.global_id_sql("Task", v)),
        "task": ACTIVITY.fields["task"],
        "actor": ACTIVITY.fields["actor"],
        "changed_fields": Value(_changed_fields),
        "occurred_at": timestamp("created_at"),
    },
    visible=lambda c, p: c.workspace_id == any_(p.readable),
)

SUBSCRIPTION = NodeType(
    "Subscription",
    None,
    {
        # Which events a subscriber gets (its workspace and project) is the hub's to decide
        # (graph/pubsub.py); the statement reads the one event it is run for.
        "task_events": One(
            "TaskEvent",
            lambda e, parent, p, args, param: [
                e.id == bindparam(EVENT_PARAM, type_=BigInteger),
                e.workspace_id == any_(p.readable),
            ],
            arguments=Arguments(convert=lambda **_: None),
        ),
    },
)
