"""Domain errors raised by `db` and translated to GraphQL errors by `graph`."""

from __future__ import annotations


class InvalidArgument(Exception):
    """An argument the caller can fix (bad cursor, page size out of range, malformed value)."""


class NotFound(Exception):
    """The object does not exist, or the principal may not know that it exists."""


class Forbidden(Exception):
    """The principal can see the object but may not do this with it."""


class Unauthenticated(Exception):
    """Credentials were given but are expired, revoked or forged, or none were given for
    something that needs a principal."""
