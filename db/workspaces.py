"""Workspaces and memberships: reads and commands (create, rename, add/change/remove members)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Text, any_, delete, false, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities, live_events, projects, tasks, validation, wire
from db.accounts import check_email, normalise_email
from db.activities import change
from db.descriptions import (
    Arguments,
    Columns,
    Listing,
    Many,
    NodeType,
    One,
    Value,
    global_id,
    page_arguments,
    sort_keys_of,
    timestamp,
    value,
)
from db.labels import label_order
from db.models import ActivityKind, Membership, Project, Role, Task, User, Workspace
from db.pagination import (
    SortKey,
)
from db.permissions import require_admin, require_readable, require_user
from db.principals import Principal, PrincipalSQL
from db.problems import Problem, ProblemCode, Rejected, reject

W = Workspace.__table__
M = Membership.__table__
U = User.__table__
T = Task.__table__
P = Project.__table__

WORKSPACE_KEYS = (SortKey("slug", W.c.slug, "str"),)
MEMBER_KEYS = (
    SortKey("joined", M.c.created_at, "datetime"),
    SortKey("user", M.c.user_id, "int"),
)


# ---------------------------------------------------------------- commands
#
# Who may manage members (DESIGN.md "Roles": ADMIN manages members below OWNER):
# - OWNER may add, change and remove anyone and grant any role.
# - ADMIN may add members as MEMBER or VIEWER, switch a MEMBER or VIEWER between those two
#   roles, and remove a MEMBER or VIEWER. ADMIN may not grant ADMIN or OWNER, nor change or
#   remove an ADMIN or OWNER; that includes their own role (stepping down is an owner's call).
# - Any member may remove themselves (leave).
# - MEMBER, VIEWER and API keys get FORBIDDEN; whoever cannot read the workspace, NOT_FOUND.
# - A workspace keeps at least one OWNER: the last OWNER cannot leave, be removed or be
#   demoted. That is refused as INVALID (the caller may act, the state forbids it), with a
#   message telling them to make someone else OWNER first.
#
# Every membership command locks the workspace row and then reads the actor's role and the
# owner count afresh, so membership changes of one workspace run one after another and are
# decided on committed state, not on the roles loaded when the request began. Without this,
# two owners demoting each other at once would each count two owners and leave none.
# `FOR NO KEY UPDATE` is used rather than `FOR UPDATE` because it does not conflict with the
# key-share locks that foreign-key checks take: creating tasks or projects is not blocked.

_WORKSPACE_FIELD = ("input", "workspaceId")
_USER_FIELD = ("input", "userId")
_ROLE_FIELD = ("input", "role")
# The roles an ADMIN may grant and whose holders an ADMIN may change or remove.
_BELOW_ADMIN = frozenset({Role.MEMBER, Role.VIEWER})
_LAST_OWNER = "A workspace needs at least one owner: make another member OWNER first."


def _check_name(name: str, field: tuple[str, ...]) -> list[Problem]:
    return validation.length(name, field, minimum=1, maximum=100, label="Name")


def _check_slug(slug: str, field: tuple[str, ...]) -> list[Problem]:
    return validation.slug(slug, field)


async def create_workspace(
    session: AsyncSession, principal: Principal, name: str, slug: str
) -> Any:
    """Create a workspace with the signed-in user as its OWNER."""
    user_id = require_user(principal)
    name = name.strip()
    problems = _check_name(name, ("input", "name")) + _check_slug(slug, ("input", "slug"))
    if problems:
        raise Rejected(problems)
    # The unique constraint settles a race for the slug: a concurrent insert of the same slug
    # makes this one wait for it to commit and then insert nothing.
    row = (
        await session.execute(
            pg_insert(W)
            .values(slug=slug, name=name)
            .on_conflict_do_nothing(index_elements=[W.c.slug])
            .returning(W)
        )
    ).first()
    if row is None:
        raise reject("This slug is taken.", ProblemCode.TAKEN, "input", "slug")
    await session.execute(
        insert(M).values(workspace_id=row.id, user_id=user_id, role=Role.OWNER.value)
    )
    return row


async def update_workspace(
    session: AsyncSession, principal: Principal, workspace_id: int, name: str | None
) -> Any:
    """Rename a workspace (ADMIN and above). `None` leaves the name as it is."""
    require_admin(principal, workspace_id, "Workspace", ("input", "id"))
    if name is None:
        row = (await session.execute(select(W).where(W.c.id == workspace_id))).first()
    else:
        name = name.strip()
        if problems := _check_name(name, ("input", "name")):
            raise Rejected(problems)
        row = (
            await session.execute(
                update(W)
                .where(W.c.id == workspace_id)
                .values(name=name, updated_at=func.now())
                .returning(W)
            )
        ).first()
    if row is None:
        raise reject("Workspace not found.", ProblemCode.NOT_FOUND, "input", "id")
    return row


async def _lock_for_members(session: AsyncSession, principal: Principal, workspace_id: int) -> int:
    """Refuse principals that can never manage members, then lock the workspace row.
    Returns the acting user's id."""
    require_readable(principal, workspace_id, "Workspace", _WORKSPACE_FIELD)
    if principal.user_id is None:
        raise reject("API keys cannot manage members.", ProblemCode.FORBIDDEN, *_WORKSPACE_FIELD)
    locked = await session.execute(
        select(W.c.id).where(W.c.id == workspace_id).with_for_update(key_share=True)
    )
    if locked.first() is None:
        raise reject("Workspace not found.", ProblemCode.NOT_FOUND, *_WORKSPACE_FIELD)
    return principal.user_id


def _role_of(workspace_id: int, user_id: Any) -> Any:
    return (
        select(M.c.role)
        .where(M.c.workspace_id == workspace_id, M.c.user_id == user_id)
        .scalar_subquery()
    )


def _owner_count(workspace_id: int) -> Any:
    return (
        select(func.count())
        .select_from(M)
        .where(M.c.workspace_id == workspace_id, M.c.role == Role.OWNER.value)
        .scalar_subquery()
    )


def _role(value: str | None) -> Role | None:
    return Role(value) if value is not None else None


def _require_manager(actor_role: Role | None) -> Role:
    """The actor's current role (read after the lock) must still be ADMIN or OWNER."""
    if actor_role is None:
        raise reject("Workspace not found.", ProblemCode.NOT_FOUND, *_WORKSPACE_FIELD)
    if actor_role not in (Role.ADMIN, Role.OWNER):
        raise reject(
            "Only workspace admins may manage members.", ProblemCode.FORBIDDEN, *_WORKSPACE_FIELD
        )
    return actor_role


def _may_handle(actor_role: Role, role: Role) -> bool:
    """Whether the actor may grant `role`, or change or remove a holder of it."""
    return actor_role is Role.OWNER or role in _BELOW_ADMIN


async def add_member(
    session: AsyncSession, principal: Principal, workspace_id: int, email: str, role: Role
) -> Any:
    """Add an existing user, found by e-mail (case-insensitively), with `role`."""
    require_admin(principal, workspace_id, "Workspace", _WORKSPACE_FIELD)
    email = normalise_email(email)
    if problems := check_email(email, "input", "email") or validation.storable(
        email, ("input", "email"), "E-mail"
    ):
        raise Rejected(problems)
    actor_id = await _lock_for_members(session, principal, workspace_id)
    target_id = select(U.c.id).where(func.lower(U.c.email) == func.lower(email)).scalar_subquery()
    standing = (
        await session.execute(
            select(
                _role_of(workspace_id, actor_id).label("actor_role"),
                target_id.label("user_id"),
                _role_of(workspace_id, target_id).label("target_role"),
            )
        )
    ).one()
    actor_role = _require_manager(_role(standing.actor_role))
    if not _may_handle(actor_role, role):
        raise reject(
            f"Only owners may grant the role {role.value}.", ProblemCode.FORBIDDEN, *_ROLE_FIELD
        )
    if standing.user_id is None:
        raise reject("No user has this e-mail address.", ProblemCode.NOT_FOUND, "input", "email")
    if standing.target_role is not None:
        raise reject("This user is already a member.", ProblemCode.TAKEN, "input", "email")
    return (
        await session.execute(
            insert(M)
            .values(workspace_id=workspace_id, user_id=standing.user_id, role=role.value)
            .returning(M)
        )
    ).one()


async def update_member_role(
    session: AsyncSession, principal: Principal, workspace_id: int, user_id: int, role: Role
) -> Any:
    require_admin(principal, workspace_id, "Workspace", _WORKSPACE_FIELD)
    actor_id = await _lock_for_members(session, principal, workspace_id)
    standing = (
        await session.execute(
            select(
                _role_of(workspace_id, actor_id).label("actor_role"),
                _role_of(workspace_id, user_id).label("target_role"),
                _owner_count(workspace_id).label("owners"),
            )
        )
    ).one()
    actor_role = _require_manager(_role(standing.actor_role))
    target_role = _role(standing.target_role)
    if target_role is None:
        raise reject("No member with this ID.", ProblemCode.NOT_FOUND, *_USER_FIELD)
    if not _may_handle(actor_role, target_role):
        raise reject(
            f"Only owners may change the role of an {target_role.value}.",
            ProblemCode.FORBIDDEN,
            *_USER_FIELD,
        )
    if not _may_handle(actor_role, role):
        raise reject(
            f"Only owners may grant the role {role.value}.", ProblemCode.FORBIDDEN, *_ROLE_FIELD
        )
    if target_role is Role.OWNER and role is not Role.OWNER and standing.owners <= 1:
        raise reject(_LAST_OWNER, ProblemCode.INVALID, *_ROLE_FIELD)
    changed = (
        update(M)
        .where(M.c.workspace_id == workspace_id, M.c.user_id == user_id)
        .values(role=role.value)
        .returning(M)
        .cte("changed")
    )
    notice = live_events.access_notice_sql(changed.c.workspace_id, user_id=changed.c.user_id)
    return (await session.execute(select(changed, notice))).one()


async def remove_member(
    session: AsyncSession, principal: Principal, workspace_id: int, user_id: int
) -> int:
    """Remove a member (or leave, when `user_id` is the actor) and unassign their tasks in the
    workspace, each unassignment recorded in the task's activity. Returns the user's id."""
    leaving = principal.user_id == user_id
    if not leaving:
        require_admin(principal, workspace_id, "Workspace", _WORKSPACE_FIELD)
    actor_id = await _lock_for_members(session, principal, workspace_id)
    standing = (
        await session.execute(
            select(
                _role_of(workspace_id, actor_id).label("actor_role"),
                _role_of(workspace_id, user_id).label("target_role"),
                _owner_count(workspace_id).label("owners"),
            )
        )
    ).one()
    actor_role = _role(standing.actor_role)
    if actor_role is None:
        raise reject("Workspace not found.", ProblemCode.NOT_FOUND, *_WORKSPACE_FIELD)
    target_role = _role(standing.target_role)
    if target_role is None:
        raise reject("No member with this ID.", ProblemCode.NOT_FOUND, *_USER_FIELD)
    if not leaving:
        actor_role = _require_manager(actor_role)
        if not _may_handle(actor_role, target_role):
            raise reject(
                f"Only owners may remove an {target_role.value}.",
                ProblemCode.FORBIDDEN,
                *_USER_FIELD,
            )
    if target_role is Role.OWNER and standing.owners <= 1:
        raise reject(_LAST_OWNER, ProblemCode.INVALID, *_USER_FIELD)
    removed = (
        delete(M)
        .where(M.c.workspace_id == workspace_id, M.c.user_id == user_id)
        .returning(M.c.workspace_id, M.c.user_id)
        .cte("removed")
    )
    # Its notice comes before the unassignments': their events must not reach the member.
    notice = live_events.access_notice_sql(removed.c.workspace_id, user_id=removed.c.user_id)
    await session.execute(select(notice))
    await _unassign(session, principal, workspace_id, user_id)
    return user_id


async def _unassign(
    session: AsyncSession, principal: Principal, workspace_id: int, user_id: int
) -> None:
    unassigned = (
        await session.execute(
            update(T)
            .where(
                T.c.workspace_id == workspace_id,
                T.c.assignee_id == user_id,
                P.c.id == T.c.project_id,
            )
            .values(assignee_id=None, version=T.c.version + 1, updated_at=func.now())
            .returning(T.c.id, T.c.project_id, T.c.number, P.c.key.label("project_key"))
        )
    ).all()
    for task in sorted(unassigned, key=lambda r: r.id):
        await activities.record(
            session,
            principal,
            workspace_id=workspace_id,
            project_id=task.project_id,
            task_id=task.id,
            task_key=wire.task_key(task.project_key, task.number),
            kind=ActivityKind.TASK_UPDATED,
            changes=[change("assigneeId", user_id, None)],
        )


# ---------------------------------------------------------------- read description


def _viewer_role(c: Columns, p: PrincipalSQL) -> Any:
    roles = (
        func.unnest(p.role_workspaces, p.role_names)
        .table_valued("workspace_id", "role")
        .render_derived()
    )
    return select(roles.c.role).where(roles.c.workspace_id == c.id).scalar_subquery()


def _task_by_key_params(key: str) -> dict[str, Any]:
    parsed = tasks.parse_key(key)
    return {} if parsed is None else {"key": parsed[0], "number": parsed[1]}


def _task_by_key(t: Columns, parent: Columns, p: PrincipalSQL, key: str, param: Any) -> Any:
    if tasks.parse_key(key) is None:
        return [false()]  # a malformed key finds nothing
    # Not correlated with the task row's own project (the rows' statement joins projects).
    project = (
        select(P.c.id)
        .where(P.c.workspace_id == parent.id, P.c.key == param("key", Text))
        .correlate_except(P)
        .scalar_subquery()
    )
    return [t.project_id == project, t.number == param("number", Integer)]


MEMBERSHIP = NodeType(
    "Membership",
    lambda: select(M),
    {
        "role": value("role"),
        "joined_at": timestamp("created_at"),
        "user": One("User", lambda u, parent, p, args, param: [u.id == parent.user_id]),
    },
)

WORKSPACE = NodeType(
    "Workspace",
    lambda: select(W),
    {
        "id": global_id("Workspace"),
        "slug": value("slug"),
        "name": value("name"),
        "created_at": timestamp("created_at"),
        "viewer_role": Value(_viewer_role),
        "members": Listing(
            "Membership",
            sort_keys_of(MEMBER_KEYS),
            page_arguments(),
            parent=lambda m: m.workspace_id,
        ),
        "projects": Listing(
            "Project",
            sort_keys_of(projects.PROJECT_KEYS),
            page_arguments(
                lambda include_archived=False: bool(include_archived), shape=lambda rest: rest
            ),
            parent=lambda x: x.workspace_id,
            where=lambda x, p, args, param: [] if args.rest else [x.archived_at.is_(None)],
        ),
        # Keys are matched as the resolvers match them: stripped and upper-cased.
        "project": One(
            "Project",
            lambda x, parent, p, key, param: [
                x.workspace_id == parent.id,
                x.key == param("key", Text),
            ],
            arguments=Arguments(
                convert=lambda key: key.strip().upper(), params=lambda key: {"key": key}
            ),
        ),
        "labels": Many(
            "Label",
            label_order,
            lambda x, parent, p, args, param: [x.workspace_id == parent.id],
        ),
        "tasks": tasks.task_list("workspace_id", tasks.WORKSPACE_TASK_ORDER),
        "task": One(
            "Task",
            _task_by_key,
            # Normalised, so that "eng-1" and "ENG-1" in one query are one key to the loaders.
            arguments=Arguments(
                convert=lambda key: key.strip().upper(),
                shape=lambda key: tasks.parse_key(key) is not None,
                params=_task_by_key_params,
            ),
        ),
        # Workspace admins only: for others the resolvers answer FORBIDDEN.
        "api_keys": Many(
            "ApiKey",
            lambda c: (c.created_at, c.id),
            lambda k, parent, p, args, param: [k.workspace_id == parent.id],
            refused=lambda parent, p: ~(parent.id == any_(p.manageable)),
        ),
    },
    visible=lambda c, p: c.id == any_(p.readable),
)
