"""The per-request context: the request's credentials, a session opened when first needed, the
principal, and the loaders.

Nothing is opened or looked up when a request arrives. A signed-in user's compiled query
(graph/view.py) is one statement on a pooled connection of its own: it needs neither a session
nor an authentication statement, so the session is opened by the first database call and the
principal is built by `authenticate`, which the schema runs before executing an operation
(graph/schema.py `Authentication`). The view closes the context once the response is built.

graphql-core resolves sibling fields concurrently, while an `AsyncSession` (one connection)
forbids concurrent use. Every database call of a request therefore goes through
`Context.db`, which holds an `asyncio.Lock` for the duration of the call. Loader batches
are dispatched together, so the lock serialises a handful of batched statements, not one
statement per object; a wide query is tested in tests/graph/test_context.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.fastapi import BaseContext

from db import api_keys, prepared
from db.errors import Unauthenticated
from db.principals import ANONYMOUS, Principal, Viewer
from graph.auth import api_key_of, authenticate, token_user
from graph.rate_limits import Limiters

if TYPE_CHECKING:
    from graph.loaders import Loaders
    from graph.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

# Runs one statement and returns its single value.
Run = Callable[[str, list[Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Resources:
    """What every request's context draws on; built once by the app."""

    settings: Settings
    secret_key: str
    # A session, after waiting for a turn at the pool (graph/app.py).
    open_session: Callable[[], AbstractAsyncContextManager[AsyncSession]]
    # A connection for one statement, without a session (graph/app.py).
    open_reader: Callable[[], AbstractAsyncContextManager[Run]]
    # A pooled connection without a session (graph/app.py); None: everything on sessions.
    open_pooled: Callable[[], AbstractAsyncContextManager[prepared.Pooled]] | None = None
    # The rate limits (graph/rate_limits.py); built from the settings when not given, so
    # that each app has buckets of its own.
    limiters: Limiters | None = None

    def __post_init__(self) -> None:
        if self.limiters is None:
            object.__setattr__(self, "limiters", Limiters.from_settings(self.settings))


class Context(BaseContext):
    def __init__(self, resources: Resources, authorization: str | None) -> None:
        super().__init__()
        self.resources = resources
        self.settings = resources.settings
        self.authorization = authorization
        self.lock = asyncio.Lock()
        self._pending: set[asyncio.Future[Any]] = set()
        self._session: AsyncSession | None = None
        self._session_scope: AbstractAsyncContextManager[AsyncSession] | None = None
        # Why no session could be opened: later calls fail at once instead of waiting again,
        # and the operation is answered with this one error (graph/schema.py).
        self.unavailable: Exception | None = None
        self._principal: Principal | None = None
        # Set once the request is answered: a call that comes after (a loader batch of a field
        # graphql-core cancelled) must not open a session that nothing would close.
        self._closing = False
        # Set when the request carried bad credentials; the schema refuses the operation.
        self.auth_error: Exception | None = None
        # A WebSocket's: the payload of its `connection_init`, and its open subscriptions.
        self.connection_params: dict[str, Any] | None = None
        self.subscriptions = 0

    @cached_property
    def loaders(self) -> Loaders:
        # Built on first use: a compiled query needs none.
        from graph.loaders import Loaders

        return Loaders(self)

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            # A read scoped before authentication would silently see the anonymous view.
            raise RuntimeError("the request has not been authenticated yet")
        return self._principal

    @principal.setter
    def principal(self, principal: Principal) -> None:
        self._principal = principal

    def token_user(self) -> int | None:
        """The user of a good access token, known without a statement; None otherwise."""
        return token_user(self.authorization, secret_key=self.resources.secret_key)

    async def authenticate(self) -> None:
        """Build the principal from the credentials, once; bad credentials leave the request
        anonymous with `auth_error` set."""
        if self._principal is not None:
            return
        if not self.authorization:
            self._principal = ANONYMOUS
            return
        authorization, secret_key = self.authorization, self.resources.secret_key
        key = api_key_of(authorization)
        if key is not None and self._session is None and self.resources.open_pooled is not None:
            # A session costs several times a pooled connection, and a compiled query by the
            # key needs none (graph/view.py).
            try:
                async with self.resources.open_pooled() as pooled:
                    self._principal = await api_keys.authenticate_pooled(pooled, key)
            except Unauthenticated as exc:
                self._principal, self.auth_error = ANONYMOUS, exc
            return

        async def authenticated(session: AsyncSession) -> tuple[Principal, Viewer | None]:
            return await authenticate(authorization, secret_key=secret_key, session=session)

        try:
            principal, viewer = await self.db(authenticated)
        except Unauthenticated as exc:
            self._principal, self.auth_error = ANONYMOUS, exc
            return
        self._principal = principal
        if viewer is not None:
            self.loaders.user.prime(viewer.id, viewer)

    @property
    def has_session(self) -> bool:
        return self._session is not None

    def reader(self) -> AbstractAsyncContextManager[Run]:
        """A connection of its own for one statement, without the request's session."""
        return self.resources.open_reader()

    async def _opened(self) -> AsyncSession:
        """The request's session, opened on first use (called with the lock held)."""
        if self._session is not None:
            return self._session
        if self._closing:
            raise RuntimeError("the request has been answered; no session is opened for it")
        if self.unavailable is not None:
            raise self.unavailable
        scope = self.resources.open_session()
        try:
            session = await scope.__aenter__()
        except Exception as exc:
            self.unavailable = exc
            raise
        self._session, self._session_scope = session, scope
        return session

    async def db(
        self,
        fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run a `db` function with the request's session, one caller at a time.

        graphql-core cancels sibling fields when a non-null field fails. A statement cut off
        mid-flight would break the connection, so the call runs shielded to its end; `close`
        waits for such orphans before the session is closed.
        """
        task = asyncio.ensure_future(self._locked(fn, *args, **kwargs))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def _locked(
        self,
        fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        async with self.lock:
            return await fn(await self._opened(), *args, **kwargs)

    async def settle(self) -> None:
        """Wait for database calls whose callers were cancelled (see `db`)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def close(self) -> None:
        """Wait for orphaned calls, then close the session if one was opened."""
        self._closing = True
        await self.settle()
        async with self.lock:
            scope, self._session, self._session_scope = self._session_scope, None, None
            if scope is not None:
                await scope.__aexit__(None, None, None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One mutation field = one transaction: committed when the block ends, rolled back
        (leaving no trace) when it raises. Loads made afterwards see the committed state."""
        async with self.lock:
            session = await self._opened()
            if session.in_transaction():
                # Reads earlier in the request opened a transaction; start afresh.
                await session.commit()
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()
            # Changed objects must be read anew by payload fields.
            self.loaders.clear()

    async def rollback(self) -> None:
        """End the session's transaction, if it has one, so that the next call starts afresh."""
        async with self.lock:
            if self._session is not None:
                await self._session.rollback()


def context_of(info: Any) -> Context:
    return info.context  # type: ignore[no-any-return]
