"""Shared pieces of mutation payloads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import InvalidArgument
from db.permissions import require_principal
from db.principals import Principal
from db.problems import Problem, ProblemCode, Rejected
from graph.context import context_of
from graph.ids import db_id_of

UserErrorCode = strawberry.enum(ProblemCode, name="UserErrorCode")


@strawberry.type(
    description="A problem with the input that the user can fix. Never used for server faults."
)
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field, e.g. ["input", "title"].'
    )
    message: str
    code: UserErrorCode

    @classmethod
    def from_problem(cls, problem: Problem) -> UserError:
        return cls(
            field=list(problem.field) if problem.field else None,
            message=problem.message,
            code=problem.code,
        )


def user_errors(rejected: Rejected) -> list[UserError]:
    return [UserError.from_problem(p) for p in rejected.problems]


def input_id(value: str, expected: str, *field: str) -> int:
    """The database id behind an input ID, or a NOT_FOUND user error for a malformed one."""
    try:
        return db_id_of(value, expected)
    except InvalidArgument:
        raise Rejected(
            [Problem(f"No {expected} with this ID.", ProblemCode.NOT_FOUND, tuple(field) or None)]
        ) from None


T = TypeVar("T")


async def perform(
    info: strawberry.Info, work: Callable[[AsyncSession, Principal], Awaitable[T]]
) -> tuple[T | None, list[UserError]]:
    """Run one mutation field as one transaction.

    Returns the command's result, or the user errors it was refused with (nothing written).
    An anonymous caller gets UNAUTHENTICATED before anything is read. Any other exception rolls
    the transaction back and reaches the client masked.
    """
    ctx = context_of(info)
    require_principal(ctx.principal)
    principal = ctx.principal
    try:
        return await ctx.transaction(lambda session: work(session, principal)), []
    except Rejected as rejected:
        return None, user_errors(rejected)


def given(value: str | None) -> str | None:
    """An omitted field (UNSET) and an explicit null both leave a non-nullable field as it is."""
    return None if value is strawberry.UNSET else value
