"""Error codes on the wire, and masking of faults.

Every error leaves with `extensions.code`. Errors the client caused keep their message; any
other exception becomes "Internal server error" with an error id that is logged together with
the traceback (unless DEBUG is on, when the original message is shown).
"""

from __future__ import annotations

import enum
import logging
import uuid
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from db.errors import Forbidden, InvalidArgument, NotFound, Unauthenticated, unavailable

logger = logging.getLogger("taskgraph.errors")


class ErrorCode(enum.StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    RATE_LIMITED = "RATE_LIMITED"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    # A document that is not among the trusted ones, on a server that runs only those.
    PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # The database cannot be reached or no connection came free in time: retry (HTTP 503).
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    # A request refused at the HTTP level, before any operation (malformed body, no query).
    BAD_REQUEST = "BAD_REQUEST"
    # A subscription over the caps of its connection or its principal.
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    # Live events were lost (the server could not listen for a while): refetch.
    EVENTS_MISSED = "EVENTS_MISSED"


class ApiError(Exception):
    """An error meant for the client, raised from resolvers."""

    def __init__(self, message: str, code: ErrorCode, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extensions = extensions


_DOMAIN_CODES: dict[type[Exception], ErrorCode] = {
    InvalidArgument: ErrorCode.BAD_USER_INPUT,
    NotFound: ErrorCode.NOT_FOUND,
    Forbidden: ErrorCode.FORBIDDEN,
    Unauthenticated: ErrorCode.UNAUTHENTICATED,
}


def rebuilt(
    error: GraphQLError, message: str | None = None, extensions: dict[str, Any] | None = None
) -> GraphQLError:
    """The same error (nodes, positions, path) with another message or extensions."""
    return GraphQLError(
        message if message is not None else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions if extensions is not None else error.extensions,
    )


def _with_code(
    error: GraphQLError, code: ErrorCode, message: str | None = None, **extra: Any
) -> GraphQLError:
    return rebuilt(error, message, {**(error.extensions or {}), "code": code.value, **extra})


def classify(error: GraphQLError, *, debug: bool) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    original = error.original_error
    if isinstance(error, GraphQLSyntaxError) or isinstance(original, GraphQLSyntaxError):
        return _with_code(error, ErrorCode.GRAPHQL_PARSE_FAILED)
    if original is None:
        if error.path is None and error.message.startswith("Variable '$"):
            return _with_code(error, ErrorCode.BAD_USER_INPUT)
        if error.path is None:
            return _with_code(error, ErrorCode.GRAPHQL_VALIDATION_FAILED)
        return _with_code(error, ErrorCode.INTERNAL_SERVER_ERROR)
    if isinstance(original, ApiError):
        return _with_code(error, original.code, **original.extensions)
    for kind, code in _DOMAIN_CODES.items():
        if isinstance(original, kind):
            return _with_code(error, code)
    if isinstance(original, GraphQLError):
        # Raised by graphql-core while coercing arguments (e.g. a bad scalar literal).
        return _with_code(error, ErrorCode.BAD_USER_INPUT)
    if unavailable(original):
        logger.warning("Database unavailable at %s: %s", error.path, original)
        return _with_code(
            error,
            ErrorCode.SERVICE_UNAVAILABLE,
            "The database is unavailable; retry shortly.",
        )
    error_id = uuid.uuid4().hex
    logger.error(
        "Unhandled error %s at %s",
        error_id,
        error.path,
        exc_info=(type(original), original, original.__traceback__),
    )
    if debug:
        return _with_code(error, ErrorCode.INTERNAL_SERVER_ERROR, errorId=error_id)
    return _with_code(
        error, ErrorCode.INTERNAL_SERVER_ERROR, "Internal server error", errorId=error_id
    )


def classify_all(errors: list[GraphQLError], *, debug: bool) -> list[GraphQLError]:
    return [classify(error, debug=debug) for error in errors]
