"""createWorkspace, updateWorkspace, addMember, updateMemberRole, removeMember.

The rules of who may manage whom are in db/workspaces.py.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import workspaces
from db.models import Role as DbRole
from db.principals import Principal
from graph.context import Context, context_of
from graph.ids import to_global_id
from graph.mutations.common import UserError, input_id, perform
from graph.types.common import Role
from graph.types.workspace import Membership, Workspace


@strawberry.input
class CreateWorkspaceInput:
    name: str
    slug: str


@strawberry.input
class UpdateWorkspaceInput:
    id: strawberry.ID
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="The new name; omitted or null keeps the name."
    )


@strawberry.input
class AddMemberInput:
    workspace_id: strawberry.ID
    email: str
    role: Role = DbRole.MEMBER


@strawberry.input
class UpdateMemberRoleInput:
    workspace_id: strawberry.ID
    user_id: strawberry.ID
    role: Role


@strawberry.input
class RemoveMemberInput:
    workspace_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class WorkspacePayload:
    workspace: Workspace | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MembershipPayload:
    membership: Membership | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RemoveMemberPayload:
    removed_user_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _set_own_role(ctx: Context, workspace_id: int, user_id: int, role: DbRole | None) -> None:
    """Keep the request's principal in step with a change of the viewer's own membership.

    The principal was loaded before the mutation ran; without this, later fields of the same
    request (the payload's `viewerRole`, readability checks of loaders, further mutation
    fields) would see the roles as they were.
    """
    principal = ctx.principal
    if principal.user_id != user_id:
        return
    roles = dict(principal.roles)
    if role is None:
        roles.pop(workspace_id, None)
    else:
        roles[workspace_id] = role
    ctx.principal = dataclasses.replace(principal, roles=MappingProxyType(roles))


@strawberry.type
class WorkspaceMutations:
    @strawberry.mutation(description="Create a workspace; the signed-in user becomes its OWNER.")
    async def create_workspace(
        self, info: strawberry.Info, input: CreateWorkspaceInput
    ) -> WorkspacePayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await workspaces.create_workspace(session, principal, input.name, input.slug)

        row, errors = await perform(info, work)
        if row is None:
            return WorkspacePayload(user_errors=errors)
        ctx = context_of(info)
        if ctx.principal.user_id is not None:
            _set_own_role(ctx, row.id, ctx.principal.user_id, DbRole.OWNER)
        return WorkspacePayload(workspace=Workspace.from_row(row))

    @strawberry.mutation(description="Rename a workspace (workspace admins).")
    async def update_workspace(
        self, info: strawberry.Info, input: UpdateWorkspaceInput
    ) -> WorkspacePayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            workspace_id = input_id(input.id, "Workspace", "input", "id")
            name = input.name if input.name is not strawberry.UNSET else None
            return await workspaces.update_workspace(session, principal, workspace_id, name)

        row, errors = await perform(info, work)
        if row is None:
            return WorkspacePayload(user_errors=errors)
        return WorkspacePayload(workspace=Workspace.from_row(row))

    @strawberry.mutation(
        description="Add an existing user, found by e-mail, to a workspace (workspace admins; "
        "only owners may grant ADMIN or OWNER)."
    )
    async def add_member(self, info: strawberry.Info, input: AddMemberInput) -> MembershipPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            workspace_id = input_id(input.workspace_id, "Workspace", "input", "workspaceId")
            return await workspaces.add_member(
                session, principal, workspace_id, input.email, DbRole(input.role)
            )

        row, errors = await perform(info, work)
        if row is None:
            return MembershipPayload(user_errors=errors)
        return MembershipPayload(membership=Membership.from_row(row))

    @strawberry.mutation(
        description="Change a member's role (workspace admins for MEMBER and VIEWER; owners for "
        "all). The last OWNER cannot be demoted."
    )
    async def update_member_role(
        self, info: strawberry.Info, input: UpdateMemberRoleInput
    ) -> MembershipPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            workspace_id = input_id(input.workspace_id, "Workspace", "input", "workspaceId")
            user_id = input_id(input.user_id, "User", "input", "userId")
            return await workspaces.update_member_role(
                session, principal, workspace_id, user_id, DbRole(input.role)
            )

        row, errors = await perform(info, work)
        if row is None:
            return MembershipPayload(user_errors=errors)
        _set_own_role(context_of(info), row.workspace_id, row.user_id, DbRole(row.role))
        return MembershipPayload(membership=Membership.from_row(row))

    @strawberry.mutation(
        description="Remove a member, or leave when it is the viewer; their tasks in the "
        "workspace become unassigned. The last OWNER cannot leave or be removed."
    )
    async def remove_member(
        self, info: strawberry.Info, input: RemoveMemberInput
    ) -> RemoveMemberPayload:
        async def work(session: AsyncSession, principal: Principal) -> tuple[int, int]:
            workspace_id = input_id(input.workspace_id, "Workspace", "input", "workspaceId")
            user_id = input_id(input.user_id, "User", "input", "userId")
            removed = await workspaces.remove_member(session, principal, workspace_id, user_id)
            return workspace_id, removed

        done, errors = await perform(info, work)
        if done is None:
            return RemoveMemberPayload(user_errors=errors)
        workspace_id, user_id = done
        _set_own_role(context_of(info), workspace_id, user_id, None)
        return RemoveMemberPayload(removed_user_id=strawberry.ID(to_global_id("User", user_id)))
