"""createLabel, updateLabel, deleteLabel (workspace admins)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import labels as label_db
from db.principals import Principal
from graph.ids import to_global_id
from graph.mutations.common import UserError, given, input_id, perform
from graph.types.label import Label


@strawberry.input
class CreateLabelInput:
    workspace_id: strawberry.ID
    name: str
    color: str = strawberry.field(description='Hex colour, e.g. "#d73a4a".')


@strawberry.input(description="Only the fields present are changed.")
class UpdateLabelInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    color: str | None = strawberry.UNSET


@strawberry.input
class DeleteLabelInput:
    id: strawberry.ID


@strawberry.type
class LabelPayload:
    label: Label | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteLabelPayload:
    deleted_label_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _payload(row: Any, errors: list[UserError]) -> LabelPayload:
    return LabelPayload(label=Label.from_row(row) if row is not None else None, user_errors=errors)


@strawberry.type
class LabelMutations:
    @strawberry.mutation(description="Create a label; names are unique regardless of case.")
    async def create_label(self, info: strawberry.Info, input: CreateLabelInput) -> LabelPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await label_db.create_label(
                session,
                principal,
                input_id(input.workspace_id, "Workspace", "input", "workspaceId"),
                input.name,
                input.color,
            )

        return _payload(*await perform(info, work))

    @strawberry.mutation(description="Rename or recolour a label.")
    async def update_label(self, info: strawberry.Info, input: UpdateLabelInput) -> LabelPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await label_db.update_label(
                session,
                principal,
                input_id(input.id, "Label", "input", "id"),
                name=given(input.name),
                color=given(input.color),
            )

        return _payload(*await perform(info, work))

    @strawberry.mutation(description="Delete a label and take it off every task.")
    async def delete_label(
        self, info: strawberry.Info, input: DeleteLabelInput
    ) -> DeleteLabelPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await label_db.delete_label(
                session, principal, input_id(input.id, "Label", "input", "id")
            )

        row, errors = await perform(info, work)
        if row is None:
            return DeleteLabelPayload(user_errors=errors)
        return DeleteLabelPayload(deleted_label_id=strawberry.ID(to_global_id("Label", row.id)))
