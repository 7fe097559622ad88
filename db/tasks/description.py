"""The read description of a task (`db.descriptions`) and of task lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    any_,
    func,
    select,
)

from db import activities, comments, wire
from db.descriptions import (
    Arguments,
    Columns,
    Listing,
    Many,
    NodeType,
    One,
    Param,
    Value,
    global_id,
    page_arguments,
    sort_keys_of,
    timestamp,
    value,
)
from db.labels import label_order
from db.models import (
    TaskPriority,
)
from db.principals import PrincipalSQL
from db.tasks.filters import filter_conditions, filter_params, filter_shape
from db.tasks.reads import Order, TaskOrderField, sort_keys, task_list_arguments, task_rows
from db.tasks.tables import TL, L

# ---------------------------------------------------------------- read description


def list_arguments(default_order: Order) -> Arguments:
    """The arguments of a task list: filter, orderBy and the page."""
    return page_arguments(
        lambda **given: task_list_arguments(default_order, **given),
        shape=lambda rest: (filter_shape(rest[0]), rest[1]),
        params=lambda rest: filter_params(rest[0]),
    )


def task_list(
    parent_column: str, default_order: tuple[tuple[TaskOrderField, bool], ...]
) -> Listing:
    """The tasks of a workspace or project (`parent_column` of the task is the parent's id)."""
    return Listing(
        "Task",
        lambda rest: sort_keys(rest[1]),
        list_arguments(default_order),
        parent=lambda t: t[parent_column],
        where=lambda t, p, args, param: filter_conditions(args.rest[0], param),
    )


def _labels_of_task(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Any:
    # A join, not a subquery: the parent is correlated at the level of the rows' statement.
    joined = L.join(TL, TL.c.label_id == L.c.id)
    return select(L).select_from(joined).where(TL.c.task_id == parent.id)


def _comment_count(c: Columns, p: PrincipalSQL) -> Any:
    return select(func.count()).where(comments.C.c.task_id == c.id).scalar_subquery()


_PRIORITIES = [priority.name for priority in TaskPriority]

TASK = NodeType(
    "Task",
    task_rows,
    {
        "id": global_id("Task"),
        "number": value("number"),
        "key": Value(lambda c, p: wire.task_key_sql(c.project_key, c.number)),
        "title": value("title"),
        "description": value("description"),
        "status": value("status"),
        "priority": value("priority", lambda v: wire.enum_name_sql(v, _PRIORITIES)),
        "due_date": value("due_date", wire.day_sql),
        "position": value("position", wire.number_json_sql),
        "version": value("version"),
        "completed_at": timestamp("completed_at"),
        "created_at": timestamp("created_at"),
        "updated_at": timestamp("updated_at"),
        "project": One("Project", lambda x, parent, p, args, param: [x.id == parent.project_id]),
        "assignee": One("User", lambda u, parent, p, args, param: [u.id == parent.assignee_id]),
        "creator": One("User", lambda u, parent, p, args, param: [u.id == parent.creator_id]),
        "labels": Many("Label", label_order, rows=_labels_of_task),
        "comment_count": Value(_comment_count),
        "viewer_can_edit": Value(lambda c, p: c.workspace_id == any_(p.task_editable)),
        "comments": Listing(
            "Comment",
            sort_keys_of(comments.COMMENT_KEYS),
            page_arguments(),
            parent=lambda x: x.task_id,
        ),
        "activity": Listing(
            "Activity",
            sort_keys_of(activities.ACTIVITY_KEYS),
            page_arguments(),
            parent=lambda x: x.task_id,
        ),
    },
    visible=lambda c, p: c.workspace_id == any_(p.readable),
)
