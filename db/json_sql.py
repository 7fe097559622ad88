"""SQL pieces for reads that PostgreSQL answers as JSON (see graph/compiled.py).

Values are rendered exactly as the API renders them in Python (global IDs, ISO timestamps,
cursors), and rows are visible to exactly the principals the loaders of `db` let see them.
Parameter placeholders are named `:name`; the caller numbers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Column

from db import activities, comments, projects, workspaces
from db.errors import InvalidArgument
from db.models import TaskPriority
from db.pagination import SortKey
from db.tasks import TaskOrderField, sort_keys

# Python's `datetime.isoformat()` of a UTC timestamp: microseconds only when there are any.
_ISO_US = '''YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'''
PRIORITY_NAMES = "ARRAY[" + ",".join(f"'{p.name}'" for p in TaskPriority) + "]"


def base64url(text_sql: str) -> str:
    """URL-safe base64 without padding, as `graph.ids` and `db.pagination` write it
    (PostgreSQL's base64 also breaks lines every 76 characters; those go too)."""
    return (
        f"rtrim(translate(encode(convert_to({text_sql}, 'UTF8'), 'base64'), "
        "'+/' || chr(10), '-_'), '=')"
    )


def global_id(type_name: str, column: str) -> str:
    return base64url(f"'{type_name}:' || {column}")


def timestamp(column: str) -> str:
    return f"replace(to_char({column} AT TIME ZONE 'UTC', '{_ISO_US}'), '.000000+', '+')"


def day(column: str) -> str:
    return f"to_char({column}, 'YYYY-MM-DD')"


def number(column: str) -> str:
    """A float as orjson writes it, as JSON text (`::json` of it is the number). PostgreSQL
    drops the `.0` of whole numbers, zero-pads exponents and switches to them at 1e-5, where
    orjson writes `1024.0`, `1.5e-7` and `0.00003`. (Fractions above 1e15 still differ in
    form, not in value.)"""
    x = column
    return (
        f"CASE WHEN {x} = 0 THEN {x}::text || '.0' "
        f"WHEN {x} = trunc({x}) AND abs({x}) < 1e16 THEN {x}::bigint::text || '.0' "
        f"WHEN abs({x}) >= 1e-4 THEN {x}::text "
        f"WHEN abs({x}) >= 1e-5 THEN CASE WHEN {x} < 0 THEN '-' ELSE '' END || '0.0000' || "
        f"replace(split_part(abs({x})::text, 'e', 1), '.', '') "
        f"ELSE regexp_replace({x}::text, 'e-0*([0-9]+)$', 'e-\\1') END"
    )


def priority(column: str) -> str:
    return f"({PRIORITY_NAMES})[{column} + 1]"


@dataclass(frozen=True, slots=True)
class Key:
    """A sort key of a list: as `db.pagination.SortKey`, with the SQL of its value."""

    name: str
    sql: str
    kind: str
    descending: bool = False


def order_by(keys: Sequence[Key]) -> str:
    return ", ".join(f"{k.sql} DESC" if k.descending else k.sql for k in keys)


def cursor(keys: Sequence[Key]) -> str:
    """`db.pagination.encode_cursor` in SQL: base64 of `["<fingerprint>",[<values>]]`."""
    fingerprint = ",".join(f"{k.name}:{'d' if k.descending else 'a'}" for k in keys)
    values = []
    for k in keys:
        if k.kind == "int":
            values.append(f"({k.sql})::text")
        elif k.kind == "str":
            values.append(f"to_json(({k.sql})::text)::text")
        elif k.kind == "float":
            values.append(number(k.sql))
        elif k.kind == "datetime":
            values.append(f"'\"' || {timestamp(k.sql)} || '\"'")
        else:
            raise ValueError(f"no SQL cursor for {k.kind} keys")
    payload = f"""'["{fingerprint}",[' || {" || ',' || ".join(values)} || ']]'"""
    return base64url(payload)


# Who may see what; the same rules as the loaders (`readable` is the principal's readable
# workspaces, `member_of` the workspaces it is a member of, `me` its user id or -1).
def readable(workspace_column: str) -> str:
    return f"{workspace_column} = ANY(:readable)"


def user_visible(user_column: str) -> str:
    return _self_or_member(user_column, "readable")


def email_visible(user_column: str) -> str:
    return _self_or_member(user_column, "member_of")


def _self_or_member(user_column: str, workspaces: str) -> str:
    """The user is the principal, or a member of one of the workspaces `:<workspaces>`."""
    m = f"m_{workspaces}"
    return (
        f"({user_column} = :me OR EXISTS (SELECT 1 FROM memberships {m} "
        f"WHERE {m}.user_id = {user_column} AND {m}.workspace_id = ANY(:{workspaces})))"
    )


# A signed-in user's principal, read inside the statement instead of by a statement of its own
# (as `db.access.signed_in` reads it): the memberships of user `:viewer`, and whether the user
# still exists. `task_editable` is where the role is MEMBER or above (`Principal.can_edit_tasks`).
VIEWER = "tg_viewer"
VIEWER_CTE = (
    f"{VIEWER} AS (SELECT EXISTS (SELECT 1 FROM users WHERE id = :viewer) AS found, "
    "coalesce(array_agg(vm.workspace_id ORDER BY vm.workspace_id), '{}') AS workspaces, "
    "coalesce(array_agg(vm.role ORDER BY vm.workspace_id), '{}') AS roles, "
    "coalesce(array_agg(vm.workspace_id) FILTER (WHERE vm.role IN "
    "('OWNER', 'ADMIN', 'MEMBER')), '{}') AS editable "
    "FROM memberships vm WHERE vm.user_id = :viewer)"
)
# Cast, so that `= ANY(...)` takes them as arrays, not as subqueries of rows.
VIEWER_VALUES = {
    "readable": f"(SELECT workspaces FROM {VIEWER})::bigint[]",
    "member_of": f"(SELECT workspaces FROM {VIEWER})::bigint[]",
    "role_workspaces": f"(SELECT workspaces FROM {VIEWER})::bigint[]",
    "role_names": f"(SELECT roles FROM {VIEWER})::text[]",
    "task_editable": f"(SELECT editable FROM {VIEWER})::bigint[]",
}


def role_in(workspace_column: str) -> str:
    """The principal's role in a workspace (`roles` pairs workspace ids with role names)."""
    return (
        f"(SELECT r.role FROM unnest(:role_workspaces, :role_names) AS r(workspace_id, role) "
        f"WHERE r.workspace_id = {workspace_column})"
    )


def can_edit_tasks(workspace_column: str) -> str:
    return f"{workspace_column} = ANY(:task_editable)"


def keys_of(keys: Sequence[SortKey]) -> tuple[Key, ...] | None:
    """A list's sort keys (`db.pagination.SortKey`) on a row alias `{r}`; None when a key is not
    a plain column, which SQL cursors are not written for."""
    found = []
    for key in keys:
        if not isinstance(key.expr, Column):
            return None
        found.append(Key(key.name, f"{{r}}.{key.expr.name}", key.kind, key.descending))
    return tuple(found)


def task_keys(order: Sequence[tuple[TaskOrderField, bool]]) -> tuple[Key, ...] | None:
    """`db.tasks.sort_keys` as keys; None for the orders the normal path answers."""
    try:
        return keys_of(sort_keys(order))
    except InvalidArgument:
        return None


def _columns(keys: Sequence[SortKey]) -> tuple[Key, ...]:
    found = keys_of(keys)
    if found is None:
        raise ValueError("a list sorted by an expression has no SQL cursor")
    return found


WORKSPACE_KEYS = _columns(workspaces.WORKSPACE_KEYS)
PROJECT_KEYS = _columns(projects.PROJECT_KEYS)
COMMENT_KEYS = _columns(comments.COMMENT_KEYS)
ACTIVITY_KEYS = _columns(activities.ACTIVITY_KEYS)


def bound(keys: Sequence[Key], alias: str) -> tuple[Key, ...]:
    return tuple(Key(k.name, k.sql.format(r=alias), k.kind, k.descending) for k in keys)
