"""The read description of every API type (`db.descriptions`), by the API's type name.

Each type's rows, visibility, fields, relationships, lists and their orders are written here
once; the one-statement read path (`db.json_statement`) is built from them. The rules are the
loaders' rules (`db.<domain>`): who sees a row, an e-mail, a role; how lists are ordered and
paged; how a filter matches.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    Text,
    any_,
    case,
    column,
    exists,
    false,
    func,
    select,
)

from db import activities, comments, projects, tasks, wire, workspaces
from db.access import PrincipalSQL
from db.descriptions import (
    Arguments,
    ById,
    Columns,
    ListArgs,
    Listing,
    Many,
    NodeType,
    One,
    Param,
    Value,
    page_arguments,
    sort_keys_of,
    value,
)
from db.models import (
    Activity,
    ApiKey,
    Comment,
    Label,
    Membership,
    Project,
    Task,
    TaskLabel,
    TaskPriority,
    TaskStatus,
    User,
    Workspace,
)

U = User.__table__
W = Workspace.__table__
M = Membership.__table__
P = Project.__table__
T = Task.__table__
L = Label.__table__
TL = TaskLabel.__table__
C = Comment.__table__
A = Activity.__table__
K = ApiKey.__table__


def _id(type_name: str) -> Value:
    return Value(lambda c, p: wire.global_id_sql(type_name, c.id))


def _timestamp(name: str) -> Value:
    return value(name, wire.timestamp_sql)


def _readable(workspace_id: Any, p: PrincipalSQL) -> Any:
    return workspace_id == any_(p.readable)


def _self_or_member(user_id: Any, me: Any, workspace_ids: Any) -> Any:
    """The user is the principal, or a member of one of `workspace_ids`."""
    member = exists().where(M.c.user_id == user_id, M.c.workspace_id == any_(workspace_ids))
    return (user_id == me) | member


def _rows(source: Any, *where: Any) -> Select[Any]:
    return source.where(*where)


# -- users ---------------------------------------------------------------------------------


def _email(c: Columns, p: PrincipalSQL) -> Any:
    # Shown to the user and to members of a workspace the user belongs to; an API key is no
    # member (`accounts.email_visible`).
    return case((_self_or_member(c.id, p.me, p.member_of), c.email))


def _users() -> Select[Any]:
    return select(U.c.id, U.c.name, U.c.email, U.c.created_at)


def _user_rows(column_of: str) -> Any:
    return lambda parent, p, args, param: _rows(_users(), U.c.id == parent[column_of])


USER = NodeType(
    "User",
    _users,
    {
        "id": _id("User"),
        "name": value("name"),
        "email": Value(_email),
        "created_at": _timestamp("created_at"),
    },
    visible=lambda c, p: _self_or_member(c.id, p.me, p.readable),
)


# -- workspaces and members ----------------------------------------------------------------


def _viewer_role(c: Columns, p: PrincipalSQL) -> Any:
    roles = (
        func.unnest(p.role_workspaces, p.role_names)
        .table_valued("workspace_id", "role")
        .render_derived()
    )
    return select(roles.c.role).where(roles.c.workspace_id == c.id).scalar_subquery()


def _key_arguments() -> Arguments:
    # Keys are matched as the resolvers match them: stripped and upper-cased.
    return Arguments(
        convert=lambda key: key.strip().upper(),
        params=lambda key: {"key": key},
    )


def _task_by_key_arguments() -> Arguments:
    def params(key: str) -> dict[str, Any]:
        parsed = tasks.parse_key(key)
        return {} if parsed is None else {"key": parsed[0], "number": parsed[1]}

    return Arguments(
        convert=lambda key: key,
        shape=lambda key: tasks.parse_key(key) is not None,
        params=params,
    )


def _task_by_key(parent: Columns, p: PrincipalSQL, key: str, param: Param) -> Select[Any]:
    if tasks.parse_key(key) is None:
        return _rows(tasks.task_rows(), false())
    project = (
        select(P.c.id)
        .where(P.c.workspace_id == parent.id, P.c.key == param("key", Text))
        .scalar_subquery()
    )
    return _rows(
        tasks.task_rows(), T.c.project_id == project, T.c.number == param("number", Integer)
    )


def _api_keys(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    return _rows(select(K), K.c.workspace_id == parent.id)


MEMBERSHIP = NodeType(
    "Membership",
    lambda: select(M),
    {
        "role": value("role"),
        "joined_at": _timestamp("created_at"),
        "user": One("User", _user_rows("user_id")),
    },
)


WORKSPACE = NodeType(
    "Workspace",
    lambda: select(W),
    {
        "id": _id("Workspace"),
        "slug": value("slug"),
        "name": value("name"),
        "created_at": _timestamp("created_at"),
        "viewer_role": Value(_viewer_role),
        "members": Listing(
            "Membership",
            lambda parent, p, args, param: _rows(select(M), M.c.workspace_id == parent.id),
            sort_keys_of(workspaces.MEMBER_KEYS),
            page_arguments(),
        ),
        "projects": Listing(
            "Project",
            lambda parent, p, args, param: _rows(
                select(P),
                P.c.workspace_id == parent.id,
                *(() if args.rest else (P.c.archived_at.is_(None),)),
            ),
            sort_keys_of(projects.PROJECT_KEYS),
            page_arguments(
                lambda include_archived=False: bool(include_archived),
                shape=lambda rest: rest,
            ),
        ),
        "project": One(
            "Project",
            lambda parent, p, key, param: _rows(
                select(P), P.c.workspace_id == parent.id, P.c.key == param("key", Text)
            ),
            _key_arguments(),
        ),
        "labels": Many(
            "Label",
            lambda parent, p, args, param: _rows(select(L), L.c.workspace_id == parent.id),
            lambda c: (func.lower(c.name), c.id),
        ),
        "tasks": Listing(
            "Task",
            lambda parent, p, args, param: _task_list(T.c.workspace_id, parent, args, param),
            lambda rest: tasks.sort_keys(rest[1]),
            page_arguments(
                lambda **given: tasks.task_list_arguments(tasks.WORKSPACE_TASK_ORDER, **given),
                shape=lambda rest: (tasks.filter_shape(rest[0]), rest[1]),
                params=lambda rest: tasks.filter_params(rest[0]),
            ),
        ),
        "task": One("Task", _task_by_key, _task_by_key_arguments()),
        # For workspace admins only: others get the resolvers' FORBIDDEN.
        "api_keys": Many(
            "ApiKey",
            _api_keys,
            lambda c: (c.created_at, c.id),
            refused=lambda parent, p: ~(parent.id == any_(p.manageable)),
        ),
    },
    visible=lambda c, p: _readable(c.id, p),
)


def _task_list(parent_column: Any, parent: Columns, args: ListArgs, param: Param) -> Select[Any]:
    flt = args.rest[0]
    return _rows(
        tasks.task_rows(), parent_column == parent.id, *tasks.filter_conditions(flt, param)
    )


# -- projects ------------------------------------------------------------------------------

_STATUS_COUNTS = {
    "backlog": TaskStatus.BACKLOG,
    "todo": TaskStatus.TODO,
    "in_progress": TaskStatus.IN_PROGRESS,
    "in_review": TaskStatus.IN_REVIEW,
    "done": TaskStatus.DONE,
    "canceled": TaskStatus.CANCELED,
}


def _task_counts(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    counts = [
        func.count().filter(T.c.status == wire.sql_string(status.value)).label(name)
        for name, status in _STATUS_COUNTS.items()
    ]
    return select(*counts, func.count().label("total")).where(T.c.project_id == parent.id)


TASK_COUNTS = NodeType(
    "TaskCounts", None, {name: value(name) for name in (*_STATUS_COUNTS, "total")}
)


def _workspace_of(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    return _rows(select(W), W.c.id == parent.workspace_id, _readable(W.c.id, p))


PROJECT = NodeType(
    "Project",
    lambda: select(P),
    {
        "id": _id("Project"),
        "key": value("key"),
        "name": value("name"),
        "description": value("description"),
        "archived_at": _timestamp("archived_at"),
        "created_at": _timestamp("created_at"),
        "updated_at": _timestamp("updated_at"),
        "workspace": One("Workspace", _workspace_of),
        "tasks": Listing(
            "Task",
            lambda parent, p, args, param: _task_list(T.c.project_id, parent, args, param),
            lambda rest: tasks.sort_keys(rest[1]),
            page_arguments(
                lambda **given: tasks.task_list_arguments(tasks.PROJECT_TASK_ORDER, **given),
                shape=lambda rest: (tasks.filter_shape(rest[0]), rest[1]),
                params=lambda rest: tasks.filter_params(rest[0]),
            ),
        ),
        "task_counts": One("TaskCounts", _task_counts),
    },
    visible=lambda c, p: _readable(c.workspace_id, p),
)


# -- tasks ---------------------------------------------------------------------------------

_PRIORITIES = [priority.name for priority in TaskPriority]


def _labels_of_task(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    # A join, not a subquery: the parent is correlated at the level of the rows' statement.
    return (
        select(L).select_from(L.join(TL, TL.c.label_id == L.c.id)).where(TL.c.task_id == parent.id)
    )


def _comment_count(c: Columns, p: PrincipalSQL) -> Any:
    return select(func.count()).where(C.c.task_id == c.id).scalar_subquery()


TASK = NodeType(
    "Task",
    tasks.task_rows,
    {
        "id": _id("Task"),
        "number": value("number"),
        "key": Value(lambda c, p: wire.task_key_sql(c.project_key, c.number)),
        "title": value("title"),
        "description": value("description"),
        "status": value("status"),
        "priority": Value(lambda c, p: wire.enum_name_sql(c.priority, _PRIORITIES)),
        "due_date": value("due_date", wire.day_sql),
        "position": value("position", wire.number_json_sql),
        "version": value("version"),
        "completed_at": _timestamp("completed_at"),
        "created_at": _timestamp("created_at"),
        "updated_at": _timestamp("updated_at"),
        "project": One(
            "Project", lambda parent, p, args, param: _rows(select(P), P.c.id == parent.project_id)
        ),
        "assignee": One("User", _user_rows("assignee_id")),
        "creator": One("User", _user_rows("creator_id")),
        "labels": Many("Label", _labels_of_task, lambda c: (func.lower(c.name), c.id)),
        "comment_count": Value(_comment_count),
        "viewer_can_edit": Value(lambda c, p: c.workspace_id == any_(p.task_editable)),
        "comments": Listing(
            "Comment",
            lambda parent, p, args, param: _rows(select(C), C.c.task_id == parent.id),
            sort_keys_of(comments.COMMENT_KEYS),
            page_arguments(),
        ),
        "activity": Listing(
            "Activity",
            lambda parent, p, args, param: _rows(select(A), A.c.task_id == parent.id),
            sort_keys_of(activities.ACTIVITY_KEYS),
            page_arguments(),
        ),
    },
    visible=lambda c, p: _readable(c.workspace_id, p),
)


# -- labels, comments, activity, API keys --------------------------------------------------

LABEL = NodeType(
    "Label",
    lambda: select(L),
    {
        "id": _id("Label"),
        "name": value("name"),
        "color": value("color"),
        "workspace": One("Workspace", _workspace_of),
    },
    visible=lambda c, p: _readable(c.workspace_id, p),
)


def _task_of(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    return _rows(tasks.task_rows(), T.c.id == parent.task_id, _readable(T.c.workspace_id, p))


COMMENT = NodeType(
    "Comment",
    lambda: select(C),
    {
        "id": _id("Comment"),
        "body": value("body"),
        "created_at": _timestamp("created_at"),
        "updated_at": _timestamp("updated_at"),
        "author": One("User", _user_rows("author_id")),
        "task": One("Task", _task_of),
    },
    visible=lambda c, p: exists().where(T.c.id == c.task_id, _readable(T.c.workspace_id, p)),
)


def _changes(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    entries = (
        func.jsonb_array_elements(parent.changes)
        .table_valued(column("value"), with_ordinality="n")
        .render_derived()
    )
    return select(
        entries.c.value.op("->>")(wire.sql_string("field")).label("field"),
        entries.c.value.op("->>")(wire.sql_string("from")).label("from"),
        entries.c.value.op("->>")(wire.sql_string("to")).label("to"),
        entries.c.n,
    ).select_from(entries)


FIELD_CHANGE = NodeType(
    "FieldChange",
    None,
    {"field": value("field"), "from_": Value(lambda c, p: c["from"]), "to": value("to")},
)


def _api_key_of(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    # Visible to the workspace's admins only (`api_keys.keys_by_ids`).
    return _rows(
        select(K), K.c.id == parent.actor_api_key_id, K.c.workspace_id == any_(p.manageable)
    )


ACTIVITY = NodeType(
    "Activity",
    lambda: select(A),
    {
        "id": _id("Activity"),
        "kind": value("kind"),
        "task_key": value("task_key"),
        "created_at": _timestamp("created_at"),
        "changes": Many("FieldChange", _changes, lambda c: (c.n,)),
        "actor": One("User", _user_rows("actor_user_id")),
        "api_key": One("ApiKey", _api_key_of),
        "task": One("Task", _task_of),
    },
    visible=lambda c, p: _readable(c.workspace_id, p),
)


API_KEY = NodeType(
    "ApiKey",
    lambda: select(K),
    {
        "id": _id("ApiKey"),
        "name": value("name"),
        "prefix": value("prefix"),
        "scopes": Value(lambda c, p: func.to_json(c.scopes)),
        "created_at": _timestamp("created_at"),
        "last_used_at": _timestamp("last_used_at"),
        "revoked_at": _timestamp("revoked_at"),
        "created_by": One("User", _user_rows("created_by_id")),
    },
    visible=lambda c, p: c.workspace_id == any_(p.manageable),
)


# -- the root ------------------------------------------------------------------------------


def _me(parent: Columns, p: PrincipalSQL, args: Any, param: Param) -> Select[Any]:
    return _rows(_users(), U.c.id == p.me)


QUERY = NodeType(
    "Query",
    None,
    {
        "me": One("User", _me),
        "workspaces": Listing(
            "Workspace",
            lambda parent, p, args, param: _rows(select(W), _readable(W.c.id, p)),
            sort_keys_of(workspaces.WORKSPACE_KEYS),
            page_arguments(),
        ),
        "workspace": One(
            "Workspace",
            lambda parent, p, slug, param: _rows(
                select(W), W.c.slug == param("slug", Text), _readable(W.c.id, p)
            ),
            Arguments(convert=lambda slug: slug, params=lambda slug: {"slug": slug}),
        ),
        "node": ById(),
        "nodes": ById(many=True),
    },
)


TYPES: dict[str, NodeType] = {
    node.name: node
    for node in (
        QUERY,
        USER,
        WORKSPACE,
        MEMBERSHIP,
        PROJECT,
        TASK_COUNTS,
        TASK,
        LABEL,
        COMMENT,
        ACTIVITY,
        FIELD_CHANGE,
        API_KEY,
    )
}
