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

from sqlalchemy import BigInteger, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import raw
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
    """The signed-in user as they see themselves, shaped like a row of `users_by_ids`."""

    id: int
    name: str
    email: str
    created_at: datetime
    visible: bool = True
    email_visible: bool = True


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
    rows = await raw.rows(session, "signed_in", _signed_in, user_id=user_id)
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
