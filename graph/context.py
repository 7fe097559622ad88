"""The per-request context: one database session, the principal, and the loaders.

graphql-core resolves sibling fields concurrently, while an `AsyncSession` (one connection)
forbids concurrent use. Every database call of a request therefore goes through
`Context.db`, which holds an `asyncio.Lock` for the duration of the call. Loader batches
are dispatched together, so the lock serialises a handful of batched statements, not one
statement per object; a wide query is tested in tests/graph/test_context.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.fastapi import BaseContext

from db.access import Principal

if TYPE_CHECKING:
    from graph.loaders import Loaders
    from graph.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


class Context(BaseContext):
    def __init__(self, session: AsyncSession, principal: Principal, settings: Settings) -> None:
        super().__init__()
        from graph.loaders import Loaders

        self.session = session
        self.principal = principal
        self.settings = settings
        self.lock = asyncio.Lock()
        self._pending: set[asyncio.Future[Any]] = set()
        # Set when the request carried bad credentials; the AuthGate extension refuses it.
        self.auth_error: Exception | None = None
        self.loaders: Loaders = Loaders(self)

    async def db(
        self,
        fn: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run a `db` function with the request's session, one caller at a time.

        graphql-core cancels sibling fields when a non-null field fails. A statement cut off
        mid-flight would break the connection, so the call runs shielded to its end; `settle`
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
            return await fn(self.session, *args, **kwargs)

    async def settle(self) -> None:
        """Wait for database calls whose callers were cancelled (see `db`)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One mutation field = one transaction: committed when the block ends, rolled back
        (leaving no trace) when it raises. Loads made afterwards see the committed state."""
        async with self.lock:
            if self.session.in_transaction():
                # Reads earlier in the request opened a transaction; start afresh.
                await self.session.commit()
            try:
                yield self.session
            except BaseException:
                await self.session.rollback()
                raise
            await self.session.commit()
            # Changed objects must be read anew by payload fields.
            self.loaders.clear()


def context_of(info: Any) -> Context:
    return info.context  # type: ignore[no-any-return]
