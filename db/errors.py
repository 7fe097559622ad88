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


def unavailable(error: BaseException | None) -> bool:
    """Whether `error` (or what caused it) says the database is unavailable."""
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
