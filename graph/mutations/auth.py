"""signUp, logIn, refreshSession, logOut."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import accounts, passwords
from db.problems import Rejected
from graph.auth import issue_access_token
from graph.context import Context, context_of
from graph.ids import to_global_id
from graph.mutations.common import UserError, user_errors
from graph.rate_limits import AuthLimits, auth_error, client_address
from graph.types.user import User


@strawberry.input
class SignUpInput:
    email: str
    name: str
    password: str


@strawberry.input
class LogInInput:
    email: str
    password: str


@strawberry.input
class RefreshSessionInput:
    refresh_token: str


@strawberry.input
class LogOutInput:
    refresh_token: str


@strawberry.type
class AuthPayload:
    user: User | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the access token expires."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LogOutPayload:
    ok: bool
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _own(row: Any) -> User:
    """The signed-in user as they see themselves (their e-mail included)."""
    return User(
        id=strawberry.ID(to_global_id("User", row.id)),
        db_id=row.id,
        name=row.name,
        created_at=row.created_at,
        _email=row.email,
    )


async def _session_for(ctx: Context, session: Any, user: Any, family: Any = None) -> AuthPayload:
    settings = ctx.settings
    refresh = family or await accounts.issue_refresh_token(
        session, user.id, timedelta(days=settings.refresh_token_days)
    )
    access, expires_at = issue_access_token(
        settings.secret_key or "", user.id, timedelta(minutes=settings.access_token_minutes)
    )
    return AuthPayload(
        user=_own(user), access_token=access, refresh_token=refresh.token, expires_at=expires_at
    )


def _limits(ctx: Context) -> AuthLimits:
    limiters = ctx.resources.limiters
    assert limiters is not None
    return limiters.auth


async def _limit_attempt(ctx: Context, email: str) -> None:
    """Refuse (RATE_LIMITED) a log-in or sign-up over the limits of its e-mail or address,
    before the password is looked at (graph/rate_limits.py)."""
    throttle = await _limits(ctx).attempt(email, client_address(ctx.request))
    if not throttle.allowed:
        raise auth_error(throttle)


@strawberry.type
class AuthMutations:
    @strawberry.mutation(description="Create an account and sign in.")
    async def sign_up(self, info: strawberry.Info, input: SignUpInput) -> AuthPayload:
        ctx = context_of(info)
        await _limit_attempt(ctx, input.email)

        async def work(session: AsyncSession) -> AuthPayload:
            user = await accounts.sign_up(session, input.email, input.name, input.password)
            return await _session_for(ctx, session, user)

        try:
            # The turn is taken before the session: no connection is held while waiting.
            async with passwords.turn():
                return await ctx.transaction(work)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))

    @strawberry.mutation(description="Sign in with e-mail and password.")
    async def log_in(self, info: strawberry.Info, input: LogInInput) -> AuthPayload:
        ctx = context_of(info)
        await _limit_attempt(ctx, input.email)

        async def work(session: AsyncSession) -> AuthPayload:
            user = await accounts.log_in(session, input.email, input.password)
            return await _session_for(ctx, session, user)

        try:
            async with passwords.turn():
                payload = await ctx.transaction(work)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))
        await _limits(ctx).logged_in(input.email, client_address(ctx.request))
        return payload

    @strawberry.mutation(
        description="Exchange a refresh token for a new access token and refresh token. "
        "Each refresh token works once; reusing an old one ends the session everywhere."
    )
    async def refresh_session(
        self, info: strawberry.Info, input: RefreshSessionInput
    ) -> AuthPayload:
        ctx = context_of(info)
        lifetime = timedelta(days=ctx.settings.refresh_token_days)

        async def work(session: AsyncSession) -> AuthPayload:
            issued = await accounts.rotate_refresh_token(session, input.refresh_token, lifetime)
            user = await accounts.user_by_id(session, issued.user_id)
            return await _session_for(ctx, session, user, issued)

        try:
            return await ctx.transaction(work)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))

    @strawberry.mutation(description="End the session that the refresh token belongs to.")
    async def log_out(self, info: strawberry.Info, input: LogOutInput) -> LogOutPayload:
        ctx = context_of(info)

        async def work(session: AsyncSession) -> None:
            await accounts.revoke_refresh_token(session, input.refresh_token)

        try:
            await ctx.transaction(work)
        except Rejected as rejected:
            return LogOutPayload(ok=False, user_errors=user_errors(rejected))
        return LogOutPayload(ok=True)
