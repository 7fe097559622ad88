"""signUp, logIn, refreshSession, logOut; in browsers with the refresh token in a cookie
(graph/browser_sessions.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import accounts, passwords
from db.accounts import IssuedRefreshToken
from db.problems import Rejected
from graph import browser_sessions
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
    refresh_token: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Left out (or null): the session cookie's (see X-Session-Cookie).",
    )


@strawberry.input
class LogOutInput:
    refresh_token: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Left out (or null): the session cookie's, and the cookie is cleared.",
    )


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


async def _session_for(
    ctx: Context, session: Any, user: Any, family: IssuedRefreshToken | None = None
) -> tuple[AuthPayload, IssuedRefreshToken]:
    settings = ctx.settings
    refresh = family or await accounts.issue_refresh_token(
        session, user.id, timedelta(days=settings.refresh_token_days)
    )
    access, expires_at = issue_access_token(
        settings.secret_key or "", user.id, timedelta(minutes=settings.access_token_minutes)
    )
    payload = AuthPayload(
        user=_own(user), access_token=access, refresh_token=refresh.token, expires_at=expires_at
    )
    return payload, refresh


def _handed_out(
    ctx: Context, payload: AuthPayload, refresh: IssuedRefreshToken, in_cookie: bool
) -> AuthPayload:
    """The payload as the client gets it: with the refresh token, or (once the transaction
    that stored it committed) without it and the token set as the cookie."""
    if in_cookie:
        browser_sessions.store(ctx, refresh)
        payload.refresh_token = None
    return payload


def _given(token: str | None) -> str | None:
    # Left out (UNSET) and null alike mean "the cookie's".
    return token if isinstance(token, str) else None


def _from_cookie(rejected: Rejected) -> list[UserError]:
    # No input field to point at: the token came from the cookie.
    return [replace(error, field=None) for error in user_errors(rejected)]


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
        try:
            # Before the attempt is counted: a forged request spends nobody's attempts.
            in_cookie = browser_sessions.requested(ctx)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))
        await _limit_attempt(ctx, input.email)

        async def work(session: AsyncSession) -> tuple[AuthPayload, IssuedRefreshToken]:
            user = await accounts.sign_up(session, input.email, input.name, input.password)
            return await _session_for(ctx, session, user)

        try:
            # The turn is taken before the session: no connection is held while waiting.
            async with passwords.turn():
                payload, refresh = await ctx.transaction(work)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))
        return _handed_out(ctx, payload, refresh, in_cookie)

    @strawberry.mutation(description="Sign in with e-mail and password.")
    async def log_in(self, info: strawberry.Info, input: LogInInput) -> AuthPayload:
        ctx = context_of(info)
        try:
            # Before the attempt is counted: a forged request spends nobody's attempts.
            in_cookie = browser_sessions.requested(ctx)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))
        await _limit_attempt(ctx, input.email)

        async def work(session: AsyncSession) -> tuple[AuthPayload, IssuedRefreshToken]:
            user = await accounts.log_in(session, input.email, input.password)
            return await _session_for(ctx, session, user)

        try:
            async with passwords.turn():
                payload, refresh = await ctx.transaction(work)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))
        await _limits(ctx).logged_in(input.email, client_address(ctx.request))
        return _handed_out(ctx, payload, refresh, in_cookie)

    @strawberry.mutation(
        description="Exchange a refresh token (the input's, or else the session cookie's) for "
        "a new access token and refresh token. Each refresh token works once; reusing an old "
        "one ends the session everywhere."
    )
    async def refresh_session(
        self, info: strawberry.Info, input: RefreshSessionInput
    ) -> AuthPayload:
        ctx = context_of(info)
        lifetime = timedelta(days=ctx.settings.refresh_token_days)
        token = _given(input.refresh_token)
        from_cookie = token is None
        try:
            if token is None:
                token = browser_sessions.presented(ctx)
            # A token from the cookie goes back into it, whatever the header says.
            in_cookie = from_cookie or browser_sessions.requested(ctx)
        except Rejected as rejected:
            return AuthPayload(user_errors=user_errors(rejected))
        presented = token

        async def work(session: AsyncSession) -> tuple[AuthPayload, IssuedRefreshToken]:
            issued = await accounts.rotate_refresh_token(session, presented, lifetime)
            user = await accounts.user_by_id(session, issued.user_id)
            return await _session_for(ctx, session, user, issued)

        try:
            payload, refresh = await ctx.transaction(work)
        except Rejected as rejected:
            if not from_cookie:
                return AuthPayload(user_errors=user_errors(rejected))
            # The cookie's token will never work again: the browser forgets it.
            browser_sessions.clear(ctx)
            return AuthPayload(user_errors=_from_cookie(rejected))
        return _handed_out(ctx, payload, refresh, in_cookie)

    @strawberry.mutation(
        description="End the session that the refresh token (the input's, or else the session "
        "cookie's) belongs to; the cookie is cleared."
    )
    async def log_out(self, info: strawberry.Info, input: LogOutInput) -> LogOutPayload:
        ctx = context_of(info)
        token = _given(input.refresh_token)
        from_cookie = token is None
        try:
            if token is None:
                token = browser_sessions.presented(ctx)
        except Rejected as rejected:
            return LogOutPayload(ok=False, user_errors=user_errors(rejected))
        presented = token

        async def work(session: AsyncSession) -> None:
            await accounts.revoke_refresh_token(session, presented)

        try:
            await ctx.transaction(work)
        except Rejected as rejected:
            if not from_cookie:
                return LogOutPayload(ok=False, user_errors=user_errors(rejected))
            browser_sessions.clear(ctx)
            return LogOutPayload(ok=False, user_errors=_from_cookie(rejected))
        if from_cookie:
            browser_sessions.clear(ctx)
        return LogOutPayload(ok=True)
