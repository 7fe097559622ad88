"""createApiKey, revokeApiKey."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import api_keys
from db.models import ApiScope as DbScope
from db.principals import Principal
from graph.mutations.common import UserError, input_id, perform
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
        async def work(session: AsyncSession, principal: Principal) -> api_keys.CreatedKey:
            return await api_keys.create_api_key(
                session,
                principal,
                input_id(input.workspace_id, "Workspace", "input", "workspaceId"),
                input.name,
                [DbScope(s.value) for s in input.scopes],
            )

        created, errors = await perform(info, work)
        if created is None:
            return CreateApiKeyPayload(user_errors=errors)
        return CreateApiKeyPayload(api_key=ApiKey.from_row(created.row), secret=created.secret)

    @strawberry.mutation(description="Revoke an API key; it stops working at once.")
    async def revoke_api_key(
        self, info: strawberry.Info, input: RevokeApiKeyInput
    ) -> ApiKeyPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await api_keys.revoke_api_key(
                session, principal, input_id(input.id, "ApiKey", "input", "id")
            )

        row, errors = await perform(info, work)
        if row is None:
            return ApiKeyPayload(user_errors=errors)
        return ApiKeyPayload(api_key=ApiKey.from_row(row))
