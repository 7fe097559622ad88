"""Task filters: which tasks a list shows (`TaskFilter`), as SQL conditions whose values are
parameters, so that one statement serves every filter of the same shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    SmallInteger,
    Text,
    any_,
    exists,
    or_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from db.descriptions import named_param
from db.errors import InvalidArgument
from db.models import (
    TaskPriority,
    TaskStatus,
)
from db.sql import escape_like
from db.tasks.tables import TL, T

MAX_FILTER_VALUES = 100
MAX_SEARCH_LENGTH = 200


@dataclass(frozen=True, slots=True)
class TaskFilter:
    statuses: Sequence[TaskStatus] | None = None
    priorities: Sequence[TaskPriority] | None = None
    assignee_ids: Sequence[int] | None = None
    unassigned: bool | None = None
    label_ids: Sequence[int] | None = None
    project_ids: Sequence[int] | None = None
    due_before: date | None = None
    due_after: date | None = None
    completed: bool | None = None
    search: str | None = None


def check_filter(flt: TaskFilter) -> None:
    for name in ("statuses", "priorities", "assignee_ids", "label_ids", "project_ids"):
        values = getattr(flt, name)
        if values is not None and len(values) > MAX_FILTER_VALUES:
            raise InvalidArgument(f"A filter list holds at most {MAX_FILTER_VALUES} values.")
    if flt.search is not None and len(flt.search.strip()) > MAX_SEARCH_LENGTH:
        raise InvalidArgument(f"search is limited to {MAX_SEARCH_LENGTH} characters.")


def _search_term(flt: TaskFilter) -> str:
    return flt.search.strip() if flt.search is not None else ""


def filter_shape(flt: TaskFilter | None) -> tuple[Any, ...] | None:
    """What of a filter changes its statement's text; the values are `filter_params`."""
    if flt is None:
        return None
    return (
        flt.statuses is not None,
        flt.priorities is not None,
        flt.assignee_ids is not None,
        flt.unassigned,
        len(set(flt.label_ids or ())),
        flt.project_ids is not None,
        flt.due_before is not None,
        flt.due_after is not None,
        flt.completed,
        bool(_search_term(flt)),
    )


def filter_params(flt: TaskFilter | None) -> dict[str, Any]:
    if flt is None:
        return {}
    check_filter(flt)
    params: dict[str, Any] = {}
    if flt.statuses is not None:
        params["f_status"] = [s.value for s in flt.statuses]
    if flt.priorities is not None:
        params["f_priority"] = [int(p) for p in flt.priorities]
    if flt.assignee_ids is not None:
        params["f_assignee"] = list(flt.assignee_ids)
    for i, label_id in enumerate(sorted(set(flt.label_ids or ()))):
        params[f"f_label{i}"] = label_id
    if flt.project_ids is not None:
        params["f_project"] = list(flt.project_ids)
    if flt.due_before is not None:
        params["f_due_before"] = flt.due_before
    if flt.due_after is not None:
        params["f_due_after"] = flt.due_after
    term = _search_term(flt)
    if term:
        params["f_search"] = f"%{escape_like(term)}%"
    return params


def filter_conditions(
    flt: TaskFilter | None, param: Callable[[str, Any], Any] = named_param
) -> list[ColumnElement[bool]]:
    """The filter's conditions on `tasks`, its values as parameters `param("f_...", type)`
    (given by `filter_params`), so that one statement serves every filter of the same shape."""
    if flt is None:
        return []

    ids = ARRAY(BigInteger)
    where: list[ColumnElement[bool]] = []
    if flt.statuses is not None:
        where.append(T.c.status == any_(param("f_status", ARRAY(Text))))
    if flt.priorities is not None:
        where.append(T.c.priority == any_(param("f_priority", ARRAY(SmallInteger))))
    if flt.assignee_ids is not None:
        assigned = T.c.assignee_id == any_(param("f_assignee", ids))
        where.append(or_(assigned, T.c.assignee_id.is_(None)) if flt.unassigned else assigned)
    elif flt.unassigned is not None:
        where.append(T.c.assignee_id.is_(None) if flt.unassigned else T.c.assignee_id.isnot(None))
    # One condition per label, so that PostgreSQL may either look each task's labels up or
    # start from the tasks that carry a label, whichever the list and the label make cheaper.
    for i in range(len(set(flt.label_ids or ()))):
        label = param(f"f_label{i}", BigInteger)
        where.append(exists().where(TL.c.task_id == T.c.id, TL.c.label_id == label))
    if flt.project_ids is not None:
        where.append(T.c.project_id == any_(param("f_project", ids)))
    if flt.due_before is not None:
        where.append(T.c.due_date < param("f_due_before", Date))
    if flt.due_after is not None:
        where.append(T.c.due_date > param("f_due_after", Date))
    if flt.completed is not None:
        where.append(T.c.completed_at.isnot(None) if flt.completed else T.c.completed_at.is_(None))
    if _search_term(flt):
        pattern = param("f_search", Text)
        where.append(or_(T.c.title.ilike(pattern), T.c.description.ilike(pattern)))
    return where
