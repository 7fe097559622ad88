"""addComment, updateComment, deleteComment."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import comments as comment_db
from db.principals import Principal
from graph.ids import to_global_id
from graph.mutations.common import UserError, input_id, perform
from graph.types.comment import Comment


@strawberry.input
class AddCommentInput:
    task_id: strawberry.ID
    body: str


@strawberry.input
class UpdateCommentInput:
    id: strawberry.ID
    body: str


@strawberry.input
class DeleteCommentInput:
    id: strawberry.ID


@strawberry.type
class CommentPayload:
    comment: Comment | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteCommentPayload:
    deleted_comment_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _payload(row: Any, errors: list[UserError]) -> CommentPayload:
    return CommentPayload(
        comment=Comment.from_row(row) if row is not None else None, user_errors=errors
    )


@strawberry.type
class CommentMutations:
    @strawberry.mutation(
        description="Comment on a task (members and WRITE keys; a key writes as its creator)."
    )
    async def add_comment(self, info: strawberry.Info, input: AddCommentInput) -> CommentPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await comment_db.add_comment(
                session, principal, input_id(input.task_id, "Task", "input", "taskId"), input.body
            )

        return _payload(*await perform(info, work))

    @strawberry.mutation(description="Edit your own comment.")
    async def update_comment(
        self, info: strawberry.Info, input: UpdateCommentInput
    ) -> CommentPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await comment_db.update_comment(
                session, principal, input_id(input.id, "Comment", "input", "id"), input.body
            )

        return _payload(*await perform(info, work))

    @strawberry.mutation(description="Delete your own comment (workspace admins: any comment).")
    async def delete_comment(
        self, info: strawberry.Info, input: DeleteCommentInput
    ) -> DeleteCommentPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await comment_db.delete_comment(
                session, principal, input_id(input.id, "Comment", "input", "id")
            )

        row, errors = await perform(info, work)
        if row is None:
            return DeleteCommentPayload(user_errors=errors)
        return DeleteCommentPayload(
            deleted_comment_id=strawberry.ID(to_global_id("Comment", row.id))
        )
