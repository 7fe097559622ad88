"""The HTTP view of /graphql: Strawberry's FastAPI router, with the project's answers.

Every request to /graphql goes through this one view, so HTTP parsing, content negotiation,
limits, validation, error masking and the response encoding exist once:

- bodies are decoded with orjson, and one larger than `MAX_BODY_BYTES` is refused (413)
  before it is read to the end;
- answers are encoded with orjson; where Strawberry answers a malformed request with plain
  text, the same status carries a JSON GraphQL error (`BAD_REQUEST`) instead;
- a query the compiler knows (graph/compiled.py) is answered by one statement in which
  PostgreSQL builds the `data` JSON, written into the response as it came. This happens
  before Strawberry parses, validates and executes: the compiler parsed and validated the
  document once, when it compiled it, and a compiled answer has no errors to mask. Whatever
  the compiled path does not answer (or would answer with an error) goes on to the schema.

The compiled answer is found here, ahead of the schema's execution, rather than in a schema
extension's `on_execute`, where every compiled request paid for setting up an execution (its
context, the extensions and their runner, the parse and validation hooks): 0.1 ms of CPU more
per request in profiles (bench/README.md, step 20).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import APIRoute
from graphql import GraphQLError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from db import prepared
from db.principals import Principal
from graph import compiled
from graph.context import Context, Resources, Run
from graph.errors import ErrorCode, classify_all

log = logging.getLogger(__name__)

# Larger bodies are refused before they are read to the end (a query document plus its
# variables; task descriptions, the largest values, are limited to 50,000 characters).
MAX_BODY_BYTES = 1 << 20


class _LimitedRequest(StarletteRequestAdapter):
    async def get_body(self) -> bytes:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in self._request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large() -> HTTPException:
    return HTTPException(413, f"The request body exceeds {MAX_BODY_BYTES} bytes.")


class GraphQLView(GraphQLRouter[Context, None]):
    request_adapter_class = _LimitedRequest

    def __init__(
        self, schema: BaseSchema, path: str, *, resources: Resources, **options: Any
    ) -> None:
        self.resources = resources
        super().__init__(schema, path, context_getter=self._context, **options)
        self.compiler = compiled.Compiler(schema._schema)
        self.debug: bool = getattr(schema, "debug", False)
        self.graphql_path = path
        # The one POST route is the app's own (see `mount`).
        self.routes[:] = [
            route
            for route in self.routes
            if not (isinstance(route, APIRoute) and route.methods == {"POST"})
        ]

    def mount(self, app: FastAPI) -> None:
        """Serve the path on `app`: POST, the route of nearly every request, as a plain
        route of the app; GET (GraphiQL) and WebSocket through the router.

        The framework's route for POST solved a tree of dependencies per request (the
        context getter with its own request, response and background tasks, the root value)
        and was matched through the included router's dispatch: together more CPU than a
        compiled query's statement (bench/README.md). `_post` builds the same context and
        sub-response directly and runs the same view.
        """
        path = self.graphql_path
        app.add_route(path, self._post, methods=["POST"], include_in_schema=False)
        app.include_router(self)
        app.add_exception_handler(StarletteHTTPException, _refusal_handler(path))

    def _context(self, request: Request) -> Context:
        # Nothing is opened or looked up yet (graph/context.py); `run` closes it.
        context = Context(self.resources, request.headers.get("authorization"))
        context.request = request
        return context

    async def _post(self, request: Request) -> Response:
        # As the framework prepares a route's `response` parameter: no status or length yet.
        sub_response = Response()
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]
        context = self._context(request)
        context.response = sub_response
        # Read back by `get_sub_response` before `run` first yields, as on the router's routes.
        self.temporal_response = sub_response
        return await self.run(request, context, None)

    def decode_json(self, data: str | bytes) -> object:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson refuses escaped lone surrogates ("\ud800"), which JSON's grammar allows;
            # such input is the resolvers' to judge. Malformed JSON fails here as well.
            return json.loads(data)

    def encode_json(self, data: object) -> bytes:
        # orjson is ~10x faster than json for large results, and writes a compiled answer's
        # `data` (an orjson.Fragment) as it is.
        return orjson.dumps(data)

    async def run(  # type: ignore[override]
        self,
        request: Request | WebSocket,
        context: Context | Any = UNSET,
        root_value: None = UNSET,
    ) -> Response | WebSocket:
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            return _refused(exc.status_code, exc.reason)
        finally:
            if isinstance(context, Context):
                try:
                    await context.close()
                except Exception:
                    log.exception("closing a request's session failed after its answer")

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        query, name = request_data.query, request_data.operation_name
        # Operations run on POST only (no queries over GET); malformed names are the
        # schema's to report.
        if (
            request_adapter.method == "POST"
            and isinstance(query, str)
            and (name is None or isinstance(name, str))
            and isinstance(context, Context)
        ):
            operation = self.compiler.lookup(query, name)
            if operation is not None:
                try:
                    data = await self._compiled(context, operation, request_data.variables)
                except Exception as exc:
                    # No connection to be had (the pool timed out, the database is down) or
                    # the statement timed out: the answer, masked like any other fault, not
                    # a reason to wait as long again on the normal path.
                    error = GraphQLError(str(exc), original_error=exc)
                    return ExecutionResult(
                        data=None, errors=classify_all([error], debug=self.debug)
                    )
                if data is not None:
                    return ExecutionResult(data=orjson.Fragment(data), errors=None)  # type: ignore[arg-type]
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def _compiled(
        self, context: Context, operation: compiled.Operation, variables: dict[str, Any] | None
    ) -> bytes | None:
        """The `data` JSON of a compiled operation, or None for the normal path."""
        user = context.token_user()
        if user is not None:
            # The statement reads the user's memberships itself: no authentication statement
            # and no session. None also when the user no longer exists: the normal path
            # says so.
            rendered = self._render(operation, None, user, variables)
            if rendered is None:
                return None
            async with context.reader() as run:
                return await _run(run, *rendered)
        await context.authenticate()
        if context.auth_error is not None:
            return None  # refused by the schema
        rendered = self._render(operation, context.principal, None, variables)
        if rendered is None:
            return None
        if not context.has_session:
            async with context.reader() as run:
                return await _run(run, *rendered)

        # An API key was looked up on the session: the statement follows on its connection.
        async def on_session(sql: str, args: list[Any]) -> Any:
            return await context.db(prepared.value, sql, args)

        data = await _run(on_session, *rendered)
        if data is None:
            # The session goes on to the normal path: not in a failed transaction.
            await context.rollback()
        return data

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


def _refused(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Response:
    """A request refused before any operation ran, in the form of every other answer."""
    code = ErrorCode.BAD_USER_INPUT if status == 413 else ErrorCode.BAD_REQUEST
    body = {"errors": [{"message": reason, "extensions": {"code": code.value}}]}
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def _refusal_handler(path: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The app's handler of HTTP errors raised before the view is reached (a method the
    route does not take): at `path` they are answered like the view's own refusals, elsewhere
    as the framework answers them."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path != path:
            return await http_exception_handler(request, exc)
        return _refused(exc.status_code, exc.detail, exc.headers)

    return handle
