"""Browser sessions: the refresh token in an HttpOnly cookie, for single-page apps.

A page keeps its access token in memory only; the refresh token lives in a cookie that no
script can read (`HttpOnly`), so a cross-site-scripting bug cannot carry a month-long session
away. The rules:

- Opt-in per request: `logIn`, `signUp` and `refreshSession` called with the header
  `X-Session-Cookie: 1` set the refresh token as the cookie and leave it out of the payload.
  The header is not a "simple" one, so a page of another origin cannot send it without a CORS
  preflight, which only the allowed origins pass. Requests without it work as before.
- `refreshSession` and `logOut` without a token use the cookie: a refresh rotates it (the new
  token replaces the cookie; a reused old one still revokes the chain, db/accounts.py) and a
  log-out ends its session. A log-out clears the cookie, and so does a refresh whose token
  will never work again.
- The cookie authenticates nothing else: queries and other mutations take the bearer access
  token only (graph/context.py reads the `Authorization` header, never a cookie). A forged
  cross-site request can therefore at most rotate a session, and even that is refused: the
  cookie is honoured only on a request that a page of another site cannot send (a mutation
  arrives only as a JSON POST, which needs a preflight; graph/http_protocol.py) and, when
  `CORS_ORIGINS` is set, whose `Origin` is one of them by name (`*` names none).
- Only over HTTP: a WebSocket's messages can set no cookie, so there the tokens stay in the
  payloads.

The cookie is `HttpOnly`, `SameSite` (`SESSION_COOKIE_SAMESITE`, Strict by default),
`Path` the GraphQL route's and `Max-Age` the token's remaining lifetime; `Secure`, except over
plain HTTP to a loopback address with the embedded database (the zero set-up default), where
some browsers (Safari) would drop it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from db.accounts import IssuedRefreshToken
from db.problems import ProblemCode, reject
from graph.context import Context

COOKIE = "taskgraph_refresh"
OPT_IN = "x-session-cookie"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _request(ctx: Context) -> Request | None:
    """The request, when it is an HTTP one (a WebSocket's context holds its connection)."""
    request = ctx.request
    return request if isinstance(request, Request) else None


def requested(ctx: Context) -> bool:
    """Whether the request asks for the refresh token as the cookie; refused (FORBIDDEN)
    when it comes from an origin that may not have it (`check_origin`)."""
    request = _request(ctx)
    if request is None or request.headers.get(OPT_IN, "").strip().lower() not in ("1", "true"):
        return False
    check_origin(ctx)
    return True


def check_origin(ctx: Context) -> None:
    """Refuse (FORBIDDEN) a request that would use or set the cookie from an origin that
    `CORS_ORIGINS` does not name (a missing `Origin` included: browsers send one with every
    POST)."""
    request = _request(ctx)
    origins = ctx.settings.cors_origins
    if request is None or not origins:
        return
    origin = request.headers.get("origin")
    if origin is None or origin == "*" or origin not in origins:
        raise reject(
            "The session cookie is accepted only from the origins the server allows "
            "(CORS_ORIGINS).",
            ProblemCode.FORBIDDEN,
        )


def presented(ctx: Context) -> str:
    """The refresh token of the request's cookie, once the request may use it."""
    request = _request(ctx)
    token = request.cookies.get(COOKIE) if request is not None else None
    if not token:
        raise reject(
            "No refresh token: pass `refreshToken`, or send the session cookie (from a "
            'browser, with `credentials: "include"`).',
            ProblemCode.INVALID,
            "input",
            "refreshToken",
        )
    check_origin(ctx)
    return token


def _cookies(ctx: Context) -> Response:
    # The view carries the Set-Cookie headers of `ctx.response` over to its answer
    # (`with_cookies`), as Strawberry's own views do.
    if ctx.response is None:
        ctx.response = Response()
    return ctx.response


def _secure(ctx: Context, request: Request) -> bool:
    url = request.url
    return not (ctx.settings.embedded and url.scheme == "http" and url.hostname in _LOOPBACK)


def store(ctx: Context, issued: IssuedRefreshToken) -> None:
    """Set the cookie to `issued`, for as long as the token lives."""
    request = _request(ctx)
    assert request is not None, "the cookie is set on HTTP requests only (`requested`)"
    remaining = (issued.expires_at - datetime.now(UTC)).total_seconds()
    _cookies(ctx).set_cookie(
        COOKIE,
        issued.token,
        max_age=max(0, math.floor(remaining)),
        path=request.url.path,
        secure=_secure(ctx, request),
        httponly=True,
        samesite=ctx.settings.session_cookie_samesite,
    )


def clear(ctx: Context) -> None:
    """Remove the cookie from the browser (the same attributes, no value, no lifetime)."""
    request = _request(ctx)
    if request is None:
        return
    _cookies(ctx).set_cookie(
        COOKIE,
        "",
        max_age=0,
        path=request.url.path,
        secure=_secure(ctx, request),
        httponly=True,
        samesite=ctx.settings.session_cookie_samesite,
    )


def with_cookies(answer: Response, ctx: Context) -> Response:
    """The answer with the cookies the operation set."""
    if ctx.response is not None:
        answer.raw_headers += [
            (name, value) for name, value in ctx.response.raw_headers if name == b"set-cookie"
        ]
    return answer
