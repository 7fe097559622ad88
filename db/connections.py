"""Connections that PostgreSQL ends: noticed, replaced, and the work they cost retried when
that is safe; and waiting for PostgreSQL at start.

PostgreSQL ends connections when it restarts or fails over, when an operator or
`idle_session_timeout` ends a backend, and a proxy may drop idle ones. A pooled connection
learns of it only when it is next used. Three rules make that cost nothing or one statement:

- A connection that asyncpg already saw close is replaced when it is checked out of the pool,
  before anything is sent on it (`watch`; no round trip: pinging every checkout would cost
  one per request).
- A call whose connection PostgreSQL ended before it answered anything of it is run once more
  on a fresh connection: nothing of it can have been written, because the first statement on a
  connection is a read or runs inside a transaction that was never committed. Whoever retries
  asks `answered` whether PostgreSQL answered anything since the call began (graph/context.py
  for sessions, `db.prepared.Pooled` for pooled connections, which retries reads only).
  Once PostgreSQL has answered, a failure is never retried: a write may have been committed.
- Everything else that meets an ended connection is answered as unavailable (`db.errors`), so
  that the client may retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from db.errors import Unreachable, connection_ended, unavailable

log = logging.getLogger("taskgraph.database")

# In a session's `info`: whether PostgreSQL answered a statement since `begin_call`.
_ANSWERED = "taskgraph.answered"
# In a pooled connection's `info`, while a session holds it: that session's `info`.
_SESSION_INFO = "taskgraph.session_info"


def watch(engine: AsyncEngine) -> None:
    """Install the rules above on `engine` (done by `db.engine.make_engine`)."""
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "do_connect", _connect)
    event.listen(sync_engine.pool, "checkout", _checkout)
    event.listen(sync_engine.pool, "checkin", _checkin)
    event.listen(sync_engine, "handle_error", _handle_error)
    event.listen(sync_engine, "after_cursor_execute", _answered_on_connection)


def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as error:
        if isinstance(error, OSError) or unavailable(error):
            # Told apart from other faults here, where it is known to come from connecting
            # (a missing socket file is a FileNotFoundError like any other).
            raise Unreachable(f"PostgreSQL cannot be reached: {error}") from error
        raise


def _checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        # The pool makes a new connection in its place.
        raise exc.DisconnectionError("PostgreSQL ended the connection while it was idle")


def _checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info.pop(_SESSION_INFO, None)


def _handle_error(context: ExceptionContext) -> None:
    # asyncpg reports a connection closed only once it has read the end of the stream; an
    # error that says PostgreSQL ended the connection is enough for the pool to drop it.
    if not context.is_disconnect and connection_ended(context.original_exception):
        context.is_disconnect = True


def _answered_on_connection(conn: Connection, *_: Any) -> None:
    info = conn.info.get(_SESSION_INFO)
    if info is not None:
        info[_ANSWERED] = True


class TrackedSession(Session):
    """The sessions of `db.engine.make_session_factory`: each links the connection it is
    given to itself, so that statements answered on it count for `answered`."""


@event.listens_for(TrackedSession, "after_begin")
def _link(session: Session, _transaction: Any, connection: Connection) -> None:
    connection.info[_SESSION_INFO] = session.info


def begin_call(session: AsyncSession) -> None:
    """A call on `session` begins: nothing of it has been answered yet. (Only tracked
    sessions learn of answers; for others `answered` stays True.)"""
    if isinstance(session.sync_session, TrackedSession):
        session.info[_ANSWERED] = False


def mark_answered(session: AsyncSession) -> None:
    """PostgreSQL answered a statement sent on the session's connection directly
    (`db.prepared`), which SQLAlchemy's events do not see."""
    session.info[_ANSWERED] = True


def answered(session: AsyncSession) -> bool:
    """Whether PostgreSQL answered anything on the session since `begin_call`; True when
    that is not known (a session of another factory), so that nothing is retried blindly."""
    return bool(session.info.get(_ANSWERED, True))


def restartable(session: AsyncSession, error: BaseException) -> bool:
    """Whether the call that failed with `error` may run again on a fresh connection: its
    connection was ended by PostgreSQL before PostgreSQL answered anything of the call."""
    return connection_ended(error) and not answered(session)


async def wait_until_reachable(
    url: str,
    *,
    patience: float,
    first_delay: float = 0.25,
    longest_delay: float = 5.0,
) -> None:
    """Return once PostgreSQL at `url` answers; until then try again with a doubling delay
    (logged each time), for at most `patience` seconds. An error that waiting cannot mend (a
    refused password, a missing database) is raised at once; so is the last one, when the
    time is up."""
    started = time.monotonic()
    delay = first_delay
    attempt = 1
    while True:
        engine = create_async_engine(url, poolclass=NullPool)
        watch(engine)
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
        except Exception as error:
            if not unavailable(error):
                raise
            waited = time.monotonic() - started
            if waited + delay > patience:
                raise
            log.warning(
                "The database at %s cannot be reached (%s); attempt %d, trying again in %.2g s "
                "(%.0f of %.0f s waited)",
                where(url),
                reason(error),
                attempt,
                delay,
                waited,
                patience,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest_delay)
            attempt += 1
        else:
            if attempt > 1:
                log.info("The database answers (after %d attempts)", attempt)
            return
        finally:
            await engine.dispose()


def where(url: str) -> str:
    """A database URL as it may be shown: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def reason(error: BaseException) -> str:
    """The root cause of a connection error, in one line (no URL: it may hold a password)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}".splitlines()[0]
