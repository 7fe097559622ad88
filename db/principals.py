"""Who may read and write what.

A principal carries the workspaces it can read, resolved once per request, so that every
read is scoped with `workspace_id = ANY(:readable)` and needs no join to memberships.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import (
    BigInteger,
    Text,
    any_,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from db import prepared
from db.models import ApiScope, Membership, Role, User

_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """The acting party of a request: a user, an API key, or nobody."""

    user_id: int | None = None
    api_key_id: int | None = None
    # For a user: its role in every workspace it belongs to. For an API key: empty.
    roles: Mapping[int, Role] = field(default_factory=lambda: MappingProxyType({}))
    api_key_workspace_id: int | None = None
    # The user who created the API key: comments written through a key carry this author.
    api_key_creator_id: int | None = None
    scopes: frozenset[ApiScope] = frozenset()

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None and self.api_key_id is None

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    @property
    def acting_user_id(self) -> int | None:
        """The user an action is attributed to: the user, or the creator of the API key."""
        return self.user_id if self.user_id is not None else self.api_key_creator_id

    @property
    def readable_workspace_ids(self) -> list[int]:
        if self.api_key_workspace_id is not None:
            return [self.api_key_workspace_id]
        return list(self.roles)

    def can_read(self, workspace_id: int) -> bool:
        if self.api_key_workspace_id is not None:
            return workspace_id == self.api_key_workspace_id
        return workspace_id in self.roles

    def role_in(self, workspace_id: int) -> Role | None:
        return self.roles.get(workspace_id)

    def has_role(self, workspace_id: int, at_least: Role) -> bool:
        role = self.roles.get(workspace_id)
        return role is not None and _RANK[role] >= _RANK[at_least]

    def can_edit_tasks(self, workspace_id: int) -> bool:
        """Create and change tasks, task labels and comments."""
        if self.api_key_workspace_id is not None:
            return workspace_id == self.api_key_workspace_id and ApiScope.WRITE in self.scopes
        return self.has_role(workspace_id, Role.MEMBER)

    def can_manage(self, workspace_id: int) -> bool:
        """Projects, labels, members below OWNER and API keys: users only."""
        return self.has_role(workspace_id, Role.ADMIN)


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in user as they see themselves, shaped like a loader's row of a User
    (`db.read_types.rows_by_ids`)."""

    id: int
    name: str
    email: str
    created_at: datetime
    visible: bool = True


def _signed_in() -> Any:
    return (
        select(
            User.id,
            User.name,
            User.email,
            User.created_at,
            Membership.workspace_id,
            Membership.role,
        )
        .select_from(User)
        .outerjoin(Membership, Membership.user_id == User.id)
        .where(User.id == bindparam("user_id", type_=BigInteger))
    )


async def signed_in(session: AsyncSession, user_id: int) -> tuple[Principal, Viewer] | None:
    """The principal of a signed-in user and their own profile, in one statement; None when
    the user no longer exists."""
    rows = await prepared.rows(session, "signed_in", _signed_in, user_id=user_id)
    if not rows:
        return None
    roles = {row.workspace_id: Role(row.role) for row in rows if row.workspace_id is not None}
    first = rows[0]
    viewer = Viewer(first.id, first.name, first.email, first.created_at)
    return Principal(user_id=user_id, roles=MappingProxyType(roles)), viewer


async def user_principal(session: AsyncSession, user_id: int) -> Principal | None:
    """The principal of a signed-in user, or None when the user no longer exists."""
    found = await signed_in(session, user_id)
    return found[0] if found is not None else None


# -- the principal in SQL ----------------------------------------------------------------------
#
# Visibility rules are SQLAlchemy expressions of a `PrincipalSQL`: the principal's values as
# SQL. For the loaders and for compiled statements of a known principal they are parameters,
# filled by `principal_params`; a compiled statement of a signed-in user instead reads the
# user's memberships itself (`viewer_sql`), saving the statement that would build the principal.

_IDS = ARRAY(BigInteger)


@dataclass(frozen=True, slots=True)
class PrincipalSQL:
    me: Any  # the user's id, or -1
    readable: Any  # workspaces it can read
    member_of: Any  # workspaces it is a member of (an API key is no member)
    role_workspaces: Any  # with `role_names`: its role in each workspace
    role_names: Any
    task_editable: Any  # workspaces where it may change tasks (`can_edit_tasks`)
    manageable: Any  # workspaces it manages (`can_manage`)
    # The statement's result is NULL when this is false (the user no longer exists).
    exists: Any = None


PRINCIPAL_PARAMS = PrincipalSQL(
    me=bindparam("p_me", type_=BigInteger),
    readable=bindparam("p_readable", type_=_IDS),
    member_of=bindparam("p_member_of", type_=_IDS),
    role_workspaces=bindparam("p_role_workspaces", type_=_IDS),
    role_names=bindparam("p_role_names", type_=ARRAY(Text)),
    task_editable=bindparam("p_task_editable", type_=_IDS),
    manageable=bindparam("p_manageable", type_=_IDS),
)


def principal_params(principal: Principal) -> dict[str, Any]:
    """The values of `PRINCIPAL_PARAMS` for a principal: the one place a principal becomes SQL."""
    readable = principal.readable_workspace_ids
    return {
        "p_me": principal.user_id if principal.user_id is not None else -1,
        "p_readable": readable,
        "p_member_of": list(principal.roles),
        "p_role_workspaces": list(principal.roles),
        "p_role_names": [Role(r).value for r in principal.roles.values()],
        "p_task_editable": [w for w in readable if principal.can_edit_tasks(w)],
        "p_manageable": [w for w in readable if principal.can_manage(w)],
    }


VIEWER_PARAM = "p_viewer"


def viewer_sql() -> PrincipalSQL:
    """The principal of signed-in user `:p_viewer`, read inside a statement (as `signed_in`
    reads it); every call makes a new CTE, to be used in one statement."""
    M = Membership.__table__
    U = User.__table__
    viewer = bindparam(VIEWER_PARAM, type_=BigInteger)

    def ids(condition: Any = None) -> Any:
        aggregated = func.array_agg(aggregate_order_by(M.c.workspace_id, M.c.workspace_id))
        if condition is not None:
            aggregated = aggregated.filter(condition)
        return type_coerce(func.coalesce(aggregated, literal_column("'{}'")), _IDS)

    roles = func.coalesce(
        func.array_agg(aggregate_order_by(M.c.role, M.c.workspace_id)), literal_column("'{}'")
    )
    cte = (
        select(
            exists().where(U.c.id == viewer).label("found"),
            ids().label("workspaces"),
            roles.label("roles"),
            ids(_role_in(_EDITORS)).label("editable"),
            ids(_role_in(_MANAGERS)).label("managed"),
        )
        .where(M.c.user_id == viewer)
        .cte("tg_viewer")
    )

    def value(column: Any, type_: Any) -> Any:
        # Cast, so that `= ANY(...)` takes an array, not the rows of a subquery.
        return cast(select(column).scalar_subquery(), type_)

    workspaces = value(cte.c.workspaces, _IDS)
    return PrincipalSQL(
        me=viewer,
        readable=workspaces,
        member_of=workspaces,
        role_workspaces=workspaces,
        role_names=value(cte.c.roles, ARRAY(Text)),
        task_editable=value(cte.c.editable, _IDS),
        manageable=value(cte.c.managed, _IDS),
        exists=select(cte.c.found).scalar_subquery(),
    )


def _role_in(roles: list[str]) -> Any:
    # Written into the statement: a list parameter would change the statement's text.
    listed = ",".join(f"'{role}'" for role in roles)
    return Membership.__table__.c.role == any_(literal_column(f"ARRAY[{listed}]::text[]"))


_EDITORS = [r.value for r in Role if _RANK[r] >= _RANK[Role.MEMBER]]
_MANAGERS = [r.value for r in Role if _RANK[r] >= _RANK[Role.ADMIN]]
