"""Tasks: reads, filtering and ordering; commands (create, update, delete, labels)."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Select,
    SmallInteger,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities, comments, raw, wire
from db.access import Principal, PrincipalSQL
from db.activities import change
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
from db.errors import InvalidArgument
from db.lists import counts_by_parent, pages_by_parent
from db.models import (
    ActivityKind,
    ApiKey,
    Label,
    Membership,
    Project,
    Task,
    TaskLabel,
    TaskPriority,
    TaskStatus,
)
from db.pagination import Page, PageArgs, SortKey, Source
from db.permissions import require_task_editor
from db.results import Problem, ProblemCode, Rejected, reject
from db.sql import any_id, escape_like, in_ids
from db.validation import length

T = Task.__table__
P = Project.__table__
L = Label.__table__
TL = TaskLabel.__table__

TaskOrderField = Literal["CREATED_AT", "UPDATED_AT", "DUE_DATE", "PRIORITY", "POSITION", "NUMBER"]
# (field, descending) pairs.
Order = tuple[tuple[TaskOrderField, bool], ...]

# Tasks without a due date sort after every dated task (ascending), as PostgreSQL does with
# NULLS LAST, but as a real value so that keyset cursors can compare it.
_DUE = func.coalesce(T.c.due_date, cast(literal("infinity"), Date))

_ORDER_EXPRS: dict[str, tuple[ColumnElement[Any], Any]] = {
    "CREATED_AT": (T.c.created_at, "datetime"),
    "UPDATED_AT": (T.c.updated_at, "datetime"),
    "DUE_DATE": (_DUE, "date"),
    "PRIORITY": (T.c.priority, "int"),
    "POSITION": (T.c.position, "float"),
    "NUMBER": (T.c.number, "int"),
}

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


def sort_keys(order: Sequence[tuple[TaskOrderField, bool]]) -> list[SortKey]:
    """Sort keys for (field, descending) pairs, with id as the final tie-break."""
    keys: list[SortKey] = []
    seen: set[str] = set()
    for field, descending in order:
        if field in seen:
            raise InvalidArgument(f"orderBy names {field} more than once.")
        seen.add(field)
        expr, kind = _ORDER_EXPRS[field]
        keys.append(SortKey(field, expr, kind, descending))
    tie_break_descending = keys[-1].descending if keys else False
    keys.append(SortKey("ID", T.c.id, "int", tie_break_descending))
    return keys


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


def _param(name: str, type_: Any) -> Any:
    return bindparam(name, type_=type_)


def filter_conditions(
    flt: TaskFilter | None, param: Callable[[str, Any], Any] = _param
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


def task_rows() -> Select[Any]:
    """A task's row: its columns, and its project's key for the task key ("ENG-42")."""
    # An outer join on the project's primary key: PostgreSQL leaves it out where nothing of the
    # project is used (a count), and joins once rather than looking the key up per row.
    joined = T.outerjoin(P, P.c.id == T.c.project_id)
    return select(T, P.c.key.label("project_key")).select_from(joined)


# Workspace-wide lists show the newest tasks first; a board lists them in their manual order.
WORKSPACE_TASK_ORDER: tuple[tuple[TaskOrderField, bool], ...] = (("CREATED_AT", True),)
PROJECT_TASK_ORDER: tuple[tuple[TaskOrderField, bool], ...] = (("POSITION", False),)
MAX_ORDER_KEYS = 6


def task_list_arguments(
    default_order: tuple[tuple[TaskOrderField, bool], ...],
    filter: TaskFilter | None = None,
    order_by: Sequence[tuple[TaskOrderField, bool]] | None = None,
) -> tuple[TaskFilter | None, tuple[tuple[TaskOrderField, bool], ...]]:
    """A task list's filter and order (field, descending), checked as the API checks them."""
    if order_by is not None and len(order_by) > MAX_ORDER_KEYS:
        raise InvalidArgument(f"orderBy takes at most {MAX_ORDER_KEYS} keys.")
    order = tuple(order_by) if order_by else default_order
    sort_keys(order)
    if filter is not None:
        check_filter(filter)
    return filter, order


def _filtered(flt: TaskFilter | None) -> Source:
    shape = filter_shape(flt)
    return Source(("tasks", shape), lambda: task_rows().where(*filter_conditions(flt)))


async def task_pages(
    session: AsyncSession,
    parent: Literal["workspace", "project"],
    parent_ids: Sequence[int],
    flt: TaskFilter | None,
    order: Sequence[tuple[TaskOrderField, bool]],
    args: PageArgs,
) -> dict[int, Page]:
    column = T.c.workspace_id if parent == "workspace" else T.c.project_id
    return await pages_by_parent(
        session, _filtered(flt), column, parent_ids, sort_keys(order), args, **filter_params(flt)
    )


async def task_counts(
    session: AsyncSession,
    parent: Literal["workspace", "project"],
    parent_ids: Sequence[int],
    flt: TaskFilter | None,
) -> dict[int, int]:
    column = T.c.workspace_id if parent == "workspace" else T.c.project_id
    return await counts_by_parent(session, _filtered(flt), column, parent_ids, **filter_params(flt))


_KEY = re.compile(r"^([A-Z][A-Z0-9]{1,9})-([1-9][0-9]{0,8})$")


def parse_key(key: str) -> tuple[str, int] | None:
    match = _KEY.match(key.strip().upper())
    return (match.group(1), int(match.group(2))) if match else None


async def tasks_by_key(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], Any]:
    """Tasks by (workspace id, human key such as "ENG-42"); the caller has checked that it may
    read the workspaces. Malformed keys find nothing."""
    wanted: dict[tuple[int, str, int], tuple[int, str]] = {}
    for workspace_id, key in keys:
        parsed = parse_key(key)
        if parsed is not None:
            wanted[(workspace_id, *parsed)] = (workspace_id, key)
    if not wanted:
        return {}
    stmt = (
        select(T, P.c.key.label("project_key"))
        .join(P, P.c.id == T.c.project_id)
        .where(tuple_(P.c.workspace_id, P.c.key, T.c.number).in_(list(wanted)))
    )
    found = {}
    for row in (await session.execute(stmt)).all():
        found[wanted[(row.workspace_id, row.project_key, row.number)]] = row
    return found


def _labels_by_task() -> Any:
    return (
        select(TL.c.task_id, L)
        .join(L, L.c.id == TL.c.label_id)
        .where(in_ids(TL.c.task_id, "ids"))
        .order_by(TL.c.task_id, func.lower(L.c.name), L.c.id)
    )


async def labels_by_task(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, list[Any]]:
    labels: dict[int, list[Any]] = {tid: [] for tid in task_ids}
    for row in await raw.rows(session, "labels_by_task", _labels_by_task, ids=list(task_ids)):
        labels[row.task_id].append(row)
    return labels


# ---------------------------------------------------------------- commands

M = Membership.__table__
K = ApiKey.__table__

TITLE_MAX = 200
DESCRIPTION_MAX = 50_000
MAX_LABELS_PER_CALL = 100
# New tasks go to the end of the board, this far behind the last one; a rebalance spaces
# every task of the project this far apart again.
POSITION_STEP = 1024.0
# Below this gap between two neighbours a midpoint is no longer trusted to lie strictly
# between them (doubles carry ~16 significant digits), so the project is rebalanced first.
MIN_POSITION_GAP = 1e-9
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


def _label_order(row: Any) -> tuple[str, int]:
    return (row.name.lower(), row.id)


def _names(labels: Sequence[Any]) -> str:
    return ", ".join(row.name for row in sorted(labels, key=_label_order))


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
        .order_by(func.lower(L.c.name), L.c.id)
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
        task_key=f"{project.key}-{number}",
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
            ordered = aggregate_order_by(column, func.lower(L.c.name), L.c.id)
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
    return f"{row.project_key}-{row.number}"


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
            position = await _placement(
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


def _order_key(row: Any) -> tuple[float, int]:
    # Boards order by (position, id); ties in position are broken by id.
    return (row.position, row.id)


def _between(lo: Any, hi: Any) -> float | None:
    """A position strictly between the neighbours, or None when they are too close."""
    if hi is None:
        return float(lo.position + POSITION_STEP)
    if lo is None:
        return float(hi.position - POSITION_STEP)
    mid = (lo.position + hi.position) / 2
    if hi.position - lo.position < MIN_POSITION_GAP or not lo.position < mid < hi.position:
        return None
    return float(mid)


async def _neighbour(session: AsyncSession, task: Any, of: Any, *, after: bool) -> Any:
    """The task right after (or before) `of` on the board, not counting `task` itself."""
    key = tuple_(T.c.position, T.c.id)
    mark = tuple_(literal(of.position), literal(of.id, BigInteger))
    stmt = (
        select(T.c.id, T.c.position)
        .where(
            T.c.project_id == task.project_id,
            T.c.id != task.id,
            key > mark if after else key < mark,
        )
        .order_by(*((T.c.position, T.c.id) if after else (T.c.position.desc(), T.c.id.desc())))
        .limit(1)
    )
    return (await session.execute(stmt)).first()


async def _positions(session: AsyncSession, project_id: int, ids: Sequence[int]) -> dict[int, Any]:
    stmt = select(T.c.id, T.c.position).where(any_id(T.c.id, ids), T.c.project_id == project_id)
    return {row.id: row for row in (await session.execute(stmt)).all()}


async def rebalance(session: AsyncSession, project_id: int) -> None:
    """Space the project's tasks POSITION_STEP apart, keeping their order.

    Not a change of any task (the order stays), so no version bump and no activity.
    """
    ranked = (
        select(
            T.c.id,
            (func.row_number().over(order_by=(T.c.position, T.c.id)) * POSITION_STEP).label("pos"),
        )
        .where(T.c.project_id == project_id)
        .subquery()
    )
    await session.execute(
        update(T)
        .where(T.c.id == ranked.c.id, T.c.position != ranked.c.pos)
        .values(position=ranked.c.pos)
    )


async def _placement(
    session: AsyncSession, task: Any, after_id: int | None, before_id: int | None
) -> float | None:
    """The task's new position between the given neighbours, or None if it already is there.

    The caller holds the project's row lock.
    """
    found = await _positions(session, task.project_id, [i for i in (after_id, before_id) if i])
    problems = [
        Problem("Must be another task of the same project.", ProblemCode.INVALID, ("input", name))
        for name, wanted in (("afterTaskId", after_id), ("beforeTaskId", before_id))
        if wanted is not None and (wanted == task.id or wanted not in found)
    ]
    if problems:
        raise Rejected(problems)
    lo = found.get(after_id) if after_id is not None else None
    hi = found.get(before_id) if before_id is not None else None
    if lo is not None and hi is not None and _order_key(lo) >= _order_key(hi):
        raise reject(
            "afterTaskId must come before beforeTaskId on the board.",
            ProblemCode.INVALID,
            "input",
            "beforeTaskId",
        )
    if hi is None:
        hi = await _neighbour(session, task, lo, after=True)
    elif lo is None:
        lo = await _neighbour(session, task, hi, after=False)
    here = _order_key(task)
    if (lo is None or _order_key(lo) < here) and (hi is None or here < _order_key(hi)):
        return None
    position = _between(lo, hi)
    if position is None:
        await rebalance(session, task.project_id)
        found = await _positions(session, task.project_id, [lo.id, hi.id])
        position = _between(found[lo.id], found[hi.id])
        assert position is not None, "positions are far apart after a rebalance"
    return position


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
        where=lambda t, parent, p, args, param: [
            t[parent_column] == parent.id,
            *filter_conditions(args.rest[0], param),
        ],
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
        "labels": Many("Label", lambda c: (func.lower(c.name), c.id), rows=_labels_of_task),
        "comment_count": Value(_comment_count),
        "viewer_can_edit": Value(lambda c, p: c.workspace_id == any_(p.task_editable)),
        "comments": Listing(
            "Comment",
            sort_keys_of(comments.COMMENT_KEYS),
            page_arguments(),
            where=lambda x, parent, p, args, param: [x.task_id == parent.id],
        ),
        "activity": Listing(
            "Activity",
            sort_keys_of(activities.ACTIVITY_KEYS),
            page_arguments(),
            where=lambda x, parent, p, args, param: [x.task_id == parent.id],
        ),
    },
    visible=lambda c, p: c.workspace_id == any_(p.readable),
)
