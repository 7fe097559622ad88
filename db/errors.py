"""Domain errors raised by `db` and translated to GraphQL errors by `graph`."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc


class InvalidArgument(Exception):
    """An argument the caller can fix (bad cursor, page size out of range, malformed value)."""


class NotFound(Exception):
    """The object does not exist, or the principal may not know that it exists."""


class Forbidden(Exception):
    """The principal can see the object but may not do this with it."""


class Unauthenticated(Exception):
    """Credentials were given but are expired, revoked or forged, or none were given for
    something that needs a principal."""


class Unavailable(Exception):
    """No database connection came free in time."""


class Unreachable(Unavailable):
    """No connection to PostgreSQL could be opened (refused, no such socket, timed out)."""


# Errors that say the database cannot be reached or is going away: the request may be retried,
# unlike a fault of the server's own.
# (Refused or timed-out sockets are OSErrors: see `unavailable`.)
_UNREACHABLE = (
    Unavailable,
    sa_exc.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


# PostgreSQL ended the connection: shut down or restarting (57P01-57P03), a backend ended by
# pg_terminate_backend or idle_session_timeout, a socket that closed under a statement.
# A server ending a connection sends a FATAL error, then closes the socket; a statement sent
# after asyncpg read the error but before it read the end of the stream is refused with
# `InternalClientError` ("another operation is in progress"), before anything is sent. Every
# connection here has one user at a time (graph/context.py, db/prepared.py), so that is the
# only way to meet that error.
_ENDED = (
    asyncpg.InternalClientError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.IdleSessionTimeoutError,
    ConnectionResetError,
    BrokenPipeError,
)


def connection_ended(error: BaseException | None) -> bool:
    """Whether `error` (or what caused it) says that PostgreSQL ended the connection the
    statement went to, rather than that the statement failed."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, _ENDED):
            return True
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, asyncpg.InterfaceError) and "connection is closed" in str(error):
            # asyncpg refuses a statement on a connection it saw close (as SQLAlchemy tells it).
            return True
        if isinstance(error, asyncpg.PostgresError) and (
            getattr(error, "severity_en", None) or getattr(error, "severity", None)
        ) in ("FATAL", "PANIC"):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def unavailable(error: BaseException | None) -> bool:
    """Whether `error` (or what caused it) says the database is unavailable."""
    if connection_ended(error):
        return True
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, _UNREACHABLE):
            return True
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
            # Connection refused, host unreachable: the socket never opened.
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
