"""`POST /graphql` with a JSON body, served without the web framework's per-request machinery.

Profiles of small operations (bench/README.md) put about a fifth of a request in routing,
dependency injection and the generic HTTP view around the GraphQL execution. This ASGI layer
answers the one request shape that carries nearly all traffic, a JSON `{query, variables,
operationName}` POST, by running the schema directly with the same context, the same error
handling and the same response body as the framework route. Anything else (GraphiQL on GET,
multipart, malformed bodies, WebSockets, health checks) goes on to the framework unchanged,
with the body it has already read replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import orjson
from graphql import GraphQLError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.http import process_result
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from db import raw
from db.access import Principal
from graph import compiled
from graph.context import Context
from graph.errors import ErrorCode, classify_all

log = logging.getLogger(__name__)

# Larger bodies are refused before they are read to the end (a query document plus its
# variables; task descriptions, the largest values, are limited to 50,000 characters).
MAX_BODY_BYTES = 1 << 20
_POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})

OpenContext = Callable[[str | None], AbstractAsyncContextManager[Context]]
# Runs one statement and returns its single value.
Run = Callable[[str, list[Any]], Awaitable[Any]]
OpenReader = Callable[[], AbstractAsyncContextManager[Run]]
TokenUser = Callable[[str | None], int | None]


class GraphQLPost:
    def __init__(
        self,
        app: ASGIApp,
        *,
        schema: BaseSchema,
        open_context: OpenContext,
        open_reader: OpenReader,
        token_user: TokenUser,
        path: str,
    ) -> None:
        self.app = app
        self.schema = schema
        self.open_context = open_context
        # A compiled query of a signed-in user needs no authentication statement: its one
        # statement reads the user's memberships itself (graph/compiled.py `statement`).
        self.open_reader = open_reader
        self.token_user = token_user
        self.path = path
        self.compiler = compiled.Compiler(schema._schema)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        accept = headers.get(b"accept", b"")
        if media_type != b"application/json" or b"multipart/" in accept:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        request = _operation(body)
        if request is None:
            # Malformed requests get the framework's own answers.
            await self.app(scope, _replay(body, receive), send)
            return
        query, variables, operation_name, extensions = request
        operation = self.compiler.lookup(query, operation_name)
        raw_authorization = headers.get(b"authorization")
        authorization = (
            raw_authorization.decode("latin-1") if raw_authorization is not None else None
        )
        response: tuple[int, bytes, bytes] | None = None
        try:
            if operation is not None:
                user = self.token_user(authorization)
                if user is not None:
                    data = await self._compiled_for_user(operation, user, variables)
                    if data is not None:
                        response = (200, b"application/json", b'{"data":' + data + b"}")
            if response is None:
                async with self.open_context(authorization) as context:
                    response = await self._execute(
                        context, operation, query, variables, operation_name, extensions
                    )
        except Exception as exc:
            if response is not None:
                log.exception("closing a request's session failed after its answer")
            else:
                # No connection to be had (the pool timed out, the database is down): a
                # masked error like any other fault, not an HTTP 500.
                error = GraphQLError(str(exc), original_error=exc)
                errors = classify_all([error], debug=getattr(self.schema, "debug", False))
                body = {"data": None, "errors": [e.formatted for e in errors]}
                response = (200, b"application/json", orjson.dumps(body))
        await _respond(send, *response)

    async def _execute(
        self,
        context: Context,
        operation: compiled.Operation | None,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        extensions: dict[str, Any] | None,
    ) -> tuple[int, bytes, bytes]:
        """Status, content type and body of the answer."""
        if operation is not None and context.auth_error is None:
            data = await self._compiled(context, operation, variables)
            if data is not None:
                return 200, b"application/json", b'{"data":' + data + b"}"
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=_POST_OPERATIONS,
                operation_extensions=extensions,
            )
        except CannotGetOperationTypeError as exc:
            return _plain(400, exc.as_http_error_reason())
        except InvalidOperationTypeError as exc:
            return _plain(400, exc.as_http_error_reason("POST"))
        except MissingQueryError:
            return _plain(400, "No GraphQL query found in the request")
        return 200, b"application/json", orjson.dumps(process_result(result))

    async def _compiled(
        self, context: Context, operation: compiled.Operation, variables: dict[str, Any] | None
    ) -> bytes | None:
        """The `data` of a compiled operation (graph/compiled.py), or None for the normal path."""
        rendered = self._render(operation, context.principal, None, variables)
        if rendered is None:
            return None

        async def run(sql: str, args: list[Any]) -> Any:
            return await raw.value(context.session, sql, args)

        data = await _run(run, *rendered)
        if data is None:
            # The session goes on to the normal path: not in a failed transaction.
            await context.session.rollback()
        return data

    async def _compiled_for_user(
        self, operation: compiled.Operation, user: int, variables: dict[str, Any] | None
    ) -> bytes | None:
        rendered = self._render(operation, None, user, variables)
        if rendered is None:
            return None
        # No connection to be had is the request's answer (see `__call__`), not a reason to
        # wait for one again on the normal path.
        async with self.open_reader() as run:
            # None also when the user no longer exists: the normal path says so.
            return await _run(run, *rendered)

    def _render(
        self,
        operation: compiled.Operation,
        principal: Principal | None,
        user: int | None,
        variables: dict[str, Any] | None,
    ) -> tuple[str, list[Any]] | None:
        try:
            return compiled.statement(self.compiler.schema, operation, principal, variables, user)
        except compiled.Fallback:
            return None
        except Exception:
            log.exception("compiled operation not rendered; answered by the normal path")
            return None


async def _run(run: Run, sql: str, args: list[Any]) -> bytes | None:
    try:
        text = await run(sql, args)
    except asyncpg.QueryCanceledError:
        # statement_timeout: the normal path would only wait as long again.
        raise
    except Exception:
        # The normal path answers the same question, and reports the fault if it shares it.
        log.exception("compiled operation failed; answered by the normal path")
        return None
    if text is None or compiled.refused(text):
        # A value the principal may not read: the normal path answers with its error.
        return None
    return text.encode()


def _operation(
    body: bytes,
) -> tuple[str, dict[str, Any] | None, str | None, dict[str, Any] | None] | None:
    """The parts of a well-formed single operation, or None for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    query = data.get("query")
    variables = data.get("variables")
    operation_name = data.get("operationName")
    extensions = data.get("extensions")
    if (
        not isinstance(query, str)
        or not (variables is None or isinstance(variables, dict))
        or not (operation_name is None or isinstance(operation_name, str))
        or not (extensions is None or isinstance(extensions, dict))
    ):
        return None
    return query, variables, operation_name, extensions


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, status: int, content_type: bytes, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _plain(status: int, text: str) -> tuple[int, bytes, bytes]:
    return status, b"text/plain; charset=utf-8", text.encode()


async def _too_large(send: Send) -> None:
    payload = {
        "data": None,
        "errors": [
            {
                "message": f"The request body exceeds {MAX_BODY_BYTES} bytes.",
                "extensions": {"code": ErrorCode.BAD_USER_INPUT.value},
            }
        ],
    }
    await _respond(send, 413, b"application/json", orjson.dumps(payload))
