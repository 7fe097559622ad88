"""createApiKey, revokeApiKey."""

from __future__ import annotations

import strawberry

from db import api_keys
from db.models import ApiScope as DbScope
from db.problems import Rejected
from graph.context import context_of
from graph.mutations.common import UserError, input_id, user_errors
from graph.types.api_key import ApiKey
from graph.types.common import ApiScope


@strawberry.input
class CreateApiKeyInput:
    workspace_id: strawberry.ID
    name: str
    scopes: list[ApiScope]


@strawberry.input
class RevokeApiKeyInput:
    id: strawberry.ID


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The full secret. Shown once, never stored in clear, never shown again.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ApiKeyPayload:
    api_key: ApiKey | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ApiKeyMutations:
    @strawberry.mutation(description="Create an API key for a workspace (workspace admins).")
    async def create_api_key(
        self, info: strawberry.Info, input: CreateApiKeyInput
    ) -> CreateApiKeyPayload:
        ctx = context_of(info)
        try:
            workspace_id = input_id(input.workspace_id, "Workspace", "input", "workspaceId")
            async with ctx.transaction() as session:
                created = await api_keys.create_api_key(
                    session,
                    ctx.principal,
                    workspace_id,
                    input.name,
                    [DbScope(s.value) for s in input.scopes],
                )
        except Rejected as rejected:
            return CreateApiKeyPayload(user_errors=user_errors(rejected))
        return CreateApiKeyPayload(api_key=ApiKey.from_row(created.row), secret=created.secret)

    @strawberry.mutation(description="Revoke an API key; it stops working at once.")
    async def revoke_api_key(
        self, info: strawberry.Info, input: RevokeApiKeyInput
    ) -> ApiKeyPayload:
        ctx = context_of(info)
        try:
            key_id = input_id(input.id, "ApiKey", "input", "id")
            async with ctx.transaction() as session:
                row = await api_keys.revoke_api_key(session, ctx.principal, key_id)
        except Rejected as rejected:
            return ApiKeyPayload(user_errors=user_errors(rejected))
        return ApiKeyPayload(api_key=ApiKey.from_row(row))
