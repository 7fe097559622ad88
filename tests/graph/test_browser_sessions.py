"""Browser sessions through the ASGI app: the refresh token in an HttpOnly cookie on request
(`X-Session-Cookie: 1`), refreshSession and logOut from the cookie, the CSRF rules, CORS
with credentials, and none of it over a WebSocket (graph/browser_sessions.py). In a real
browser: test_browser_sessions_chromium.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db import accounts
from db.models import RefreshToken
from graph.browser_sessions import COOKIE
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import Api, _api, without_cost
from tests.graph.live_app import TRANSPORT_WS, LiveApp, socket_to

APP = "https://app.example"
AUTH_FIELDS = "user { name } accessToken refreshToken expiresAt userErrors { field message code }"
LOG_IN = f"mutation($input: LogInInput!) {{ logIn(input: $input) {{ {AUTH_FIELDS} }} }}"
SIGN_UP = f"mutation($input: SignUpInput!) {{ signUp(input: $input) {{ {AUTH_FIELDS} }} }}"
REFRESH = (
    "mutation($input: RefreshSessionInput!) "
    f"{{ refreshSession(input: $input) {{ {AUTH_FIELDS} }} }}"
)
LOG_OUT = (
    "mutation($input: LogOutInput!) { logOut(input: $input) "
    "{ ok userErrors { field message code } } }"
)
THIRTY_DAYS = 30 * 24 * 3600


class Browser:
    """A client that keeps the session cookie as a browser would, and shows what each answer
    did to it: `set` is the cookie's attributes as the last answer set them (None: it did
    not touch the cookie)."""

    def __init__(self, client: httpx.AsyncClient, origin: str | None = None) -> None:
        self.client = client
        self.origin = origin
        self.cookie: str | None = None
        self.set: dict[str, Any] | None = None

    async def post(
        self,
        query: str,
        variables: dict[str, Any],
        *,
        opt_in: bool = False,
        token: str | None = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        headers = {}
        if self.cookie is not None:
            headers["cookie"] = f"{COOKIE}={self.cookie}"
        if opt_in:
            headers["x-session-cookie"] = "1"
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if origin or self.origin:
            headers["origin"] = origin or self.origin or ""
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        # The test's own bookkeeping, not httpx's jar.
        self.client.cookies.clear()
        assert response.status_code == 200, response.text
        self.response = response
        self.set = None
        for header in response.headers.get_list("set-cookie"):
            parsed = SimpleCookie()
            parsed.load(header)
            [(name, morsel)] = parsed.items()
            assert name == COOKIE
            self.set = {"value": morsel.value, **{k: v for k, v in morsel.items() if v != ""}}
            self.cookie = morsel.value if int(morsel["max-age"]) > 0 else None
        return without_cost(response.json())


@pytest.fixture
async def browser(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Browser]:
    """A browser on a page of the API's own origin (no CORS_ORIGINS)."""
    async for api in _api(settings, engine, connection, "https://api.example"):
        yield Browser(api.client)


@pytest.fixture
async def cross_origin(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Browser]:
    """A browser on a page of the allowed origin, CORS_ORIGINS naming it alone."""
    cors = settings.model_copy(update={"cors_origins": [APP]})
    async for api in _api(cors, engine, connection, "https://api.example"):
        yield Browser(api.client, origin=APP)


async def _session_of(session: AsyncSession, name: str = "ada") -> tuple[Any, str]:
    """A user and a refresh token of theirs, issued as log-in issues it (without spending
    Argon2's quarter second on every test)."""
    user = await factories.user(session, name)
    issued = await accounts.issue_refresh_token(session, user.id, timedelta(days=30))
    await session.commit()
    return user, issued.token


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _revoked(session: AsyncSession, token: str) -> bool:
    revoked_at = await session.scalar(
        select(RefreshToken.revoked_at).where(RefreshToken.token_hash == _hash(token))
    )
    return revoked_at is not None


async def test_log_in_with_the_header_sets_the_cookie_and_leaves_the_token_out(
    browser: Browser, session: AsyncSession
) -> None:
    user = await factories.user(session, "bob", email="bob@example.com")
    await session.commit()
    credentials = {"input": {"email": "bob@example.com", "password": factories.PASSWORD}}
    body = await browser.post(LOG_IN, credentials, opt_in=True)
    payload = body["data"]["logIn"]
    assert payload["userErrors"] == [] and payload["user"] == {"name": "bob"}
    assert payload["accessToken"] and payload["expiresAt"]
    assert payload["refreshToken"] is None
    assert browser.set is not None
    assert browser.set["httponly"] is True and browser.set["secure"] is True
    assert browser.set["samesite"] == "strict" and browser.set["path"] == "/graphql"
    # The token's remaining lifetime (30 days, less the seconds the request took).
    assert THIRTY_DAYS - 5 <= int(browser.set["max-age"]) <= THIRTY_DAYS
    # The cookie holds the refresh token the database knows (by its hash) for this user.
    stored = await session.scalar(
        select(RefreshToken.user_id).where(RefreshToken.token_hash == _hash(browser.set["value"]))
    )
    assert stored == user.id
    # The access token works as ever: as the bearer token.
    me = await browser.post("{ me { name } }", {}, token=payload["accessToken"])
    assert me == {"data": {"me": {"name": "bob"}}}


async def test_without_the_header_nothing_changes(browser: Browser, session: AsyncSession) -> None:
    body = await browser.post(
        SIGN_UP, {"input": {"email": "new@example.com", "name": "New", "password": "long pw 12"}}
    )
    payload = body["data"]["signUp"]
    assert payload["refreshToken"].startswith("tgr_") and payload["accessToken"]
    assert browser.set is None
    _, token = await _session_of(session)
    refreshed = (await browser.post(REFRESH, {"input": {"refreshToken": token}}))["data"]
    assert refreshed["refreshSession"]["refreshToken"].startswith("tgr_")
    assert browser.set is None
    assert "set-cookie" not in browser.response.headers


async def test_sign_up_with_the_header_sets_the_cookie(browser: Browser) -> None:
    body = await browser.post(
        SIGN_UP,
        {"input": {"email": "new@example.com", "name": "New", "password": "long pw 12"}},
        opt_in=True,
    )
    assert body["data"]["signUp"]["refreshToken"] is None
    assert browser.cookie is not None and browser.cookie.startswith("tgr_")
    refreshed = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
    assert refreshed["userErrors"] == [] and refreshed["user"] == {"name": "New"}


async def test_refresh_from_the_cookie_rotates_it_and_reuse_still_revokes_the_chain(
    browser: Browser, session: AsyncSession
) -> None:
    _, token = await _session_of(session)
    # A client that held the token in its payload moves it into the cookie.
    moved = (await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True))["data"]
    assert moved["refreshSession"]["refreshToken"] is None
    first = browser.cookie
    assert first is not None and first != token and await _revoked(session, token)

    # No input token: the cookie's, replaced by the next one (with or without the header).
    for variables in ({"input": {}}, {"input": {"refreshToken": None}}):
        payload = (await browser.post(REFRESH, variables))["data"]["refreshSession"]
        assert payload["userErrors"] == [] and payload["user"] == {"name": "ada"}
        assert payload["accessToken"] and payload["refreshToken"] is None
        assert browser.set is not None and browser.set["httponly"] is True
        assert browser.cookie not in (None, first)
        assert await _revoked(session, first)
        first = browser.cookie
    current = browser.cookie

    # A copy of an old cookie presented again: the whole chain ends, the cookie is cleared.
    browser.cookie = token
    reused = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
    assert [(e["code"], e["field"]) for e in reused["userErrors"]] == [("INVALID", None)]
    assert reused["accessToken"] is None
    assert browser.set is not None and browser.set["max-age"] == "0"
    assert browser.cookie is None
    assert current is not None and await _revoked(session, current)
    browser.cookie = current
    again = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
    assert [e["code"] for e in again["userErrors"]] == ["INVALID"]


async def test_without_token_or_cookie_refresh_and_log_out_say_what_is_missing(
    browser: Browser,
) -> None:
    refreshed = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
    [error] = refreshed["userErrors"]
    assert error["code"] == "INVALID" and error["field"] == ["input", "refreshToken"]
    assert "cookie" in error["message"]
    out = (await browser.post(LOG_OUT, {"input": {}}))["data"]["logOut"]
    assert out["ok"] is False
    assert [e["field"] for e in out["userErrors"]] == [["input", "refreshToken"]]
    assert browser.set is None


async def test_log_out_from_the_cookie_ends_its_session_and_clears_it(
    browser: Browser, session: AsyncSession
) -> None:
    _, token = await _session_of(session)
    await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True)
    cookie = browser.cookie
    assert cookie is not None
    out = (await browser.post(LOG_OUT, {"input": {}}))["data"]["logOut"]
    assert out == {"ok": True, "userErrors": []}
    assert browser.set is not None and browser.set["value"] == ""
    assert browser.set["max-age"] == "0" and browser.set["path"] == "/graphql"
    assert browser.cookie is None
    assert await _revoked(session, cookie)
    # A cookie of no session (forged, or of a deleted account) is cleared as well.
    browser.cookie = "tgr_unknown"
    unknown = (await browser.post(LOG_OUT, {"input": {}}))["data"]["logOut"]
    assert unknown["ok"] is False and [e["code"] for e in unknown["userErrors"]] == ["INVALID"]
    assert browser.cookie is None


async def test_log_out_with_a_token_leaves_the_cookie_alone(
    browser: Browser, session: AsyncSession
) -> None:
    _, other = await _session_of(session, "other")
    _, token = await _session_of(session)
    await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True)
    out = (await browser.post(LOG_OUT, {"input": {"refreshToken": other}}))["data"]["logOut"]
    assert out["ok"] is True and browser.set is None
    assert await _revoked(session, other)
    assert (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]["accessToken"]


async def test_the_cookie_authenticates_nothing_else(
    browser: Browser, session: AsyncSession
) -> None:
    _, token = await _session_of(session)
    await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True)
    assert browser.cookie is not None
    assert await browser.post("{ me { name } }", {}) == {"data": {"me": None}}
    created = await browser.post(
        'mutation { createWorkspace(input: {name: "X", slug: "x-ws"}) { workspace { id } } }',
        {},
    )
    assert created["data"] is None
    assert created["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_only_the_allowed_origin_may_use_or_set_the_cookie(
    cross_origin: Browser, session: AsyncSession
) -> None:
    _, token = await _session_of(session)
    browser = cross_origin
    payload = (await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True))[
        "data"
    ]["refreshSession"]
    assert payload["userErrors"] == [] and browser.cookie is not None
    # CORS with credentials for the allowed origin.
    assert browser.response.headers["access-control-allow-origin"] == APP
    assert browser.response.headers["access-control-allow-credentials"] == "true"
    cookie = browser.cookie

    refusals = [
        (REFRESH, {"input": {}}, "https://evil.example"),
        (LOG_OUT, {"input": {}}, "https://evil.example"),
        (REFRESH, {"input": {}}, "null"),  # a sandboxed frame, a file
        # A subdomain is the same site: SameSite lets its cookie through, the Origin check not.
        (REFRESH, {"input": {}}, "https://evil.app.example"),
    ]
    for query, variables, origin in refusals:
        body = (await browser.post(query, variables, origin=origin))["data"]
        [result] = body.values()
        assert [e["code"] for e in result["userErrors"]] == ["FORBIDDEN"], origin
        assert "CORS_ORIGINS" in result["userErrors"][0]["message"]
        assert browser.set is None and browser.cookie == cookie
        assert "access-control-allow-origin" not in browser.response.headers
    # No Origin at all (browsers send one with every POST).
    browser.origin = None
    body = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
    assert [e["code"] for e in body["userErrors"]] == ["FORBIDDEN"]
    # Another origin cannot have a cookie set either (log-in refused before the password).
    signed_up = await browser.post(
        SIGN_UP,
        {"input": {"email": "x@example.com", "name": "X", "password": "long pw 12"}},
        opt_in=True,
        origin="https://evil.example",
    )
    assert [e["code"] for e in signed_up["data"]["signUp"]["userErrors"]] == ["FORBIDDEN"]
    assert browser.set is None
    # A token in the input needs no Origin: a partner's server sends none.
    _, other = await _session_of(session, "other")
    plain = (await browser.post(REFRESH, {"input": {"refreshToken": other}}))["data"]
    assert plain["refreshSession"]["refreshToken"].startswith("tgr_")

    # Nothing of the refused requests rotated or ended the session.
    assert not await _revoked(session, cookie)
    browser.origin = APP
    ok = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
    assert ok["userErrors"] == [] and browser.cookie not in (None, cookie)


async def test_a_cross_site_form_cannot_send_the_cookie_to_a_mutation(
    browser: Browser, session: AsyncSession
) -> None:
    _, token = await _session_of(session)
    await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True)
    cookie = browser.cookie
    assert cookie is not None
    # What a page of another site can send without a preflight: a form's content types.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = await browser.client.post(
            "/graphql",
            content='{"query": "mutation { refreshSession(input: {}) { accessToken } }"}',
            headers={"content-type": content_type, "cookie": f"{COOKIE}={cookie}"},
        )
        assert response.status_code == 415
        assert "set-cookie" not in response.headers
    # And over GET an operation is a query at most, which the cookie does not authenticate.
    get = await browser.client.get(
        "/graphql",
        params={"query": "mutation { logOut(input: {}) { ok } }"},
        headers={"cookie": f"{COOKIE}={cookie}", "accept": "application/json"},
    )
    assert get.status_code == 400 and "set-cookie" not in get.headers
    assert not await _revoked(session, cookie)


async def test_a_preflight_allows_the_header_and_credentials(cross_origin: Browser) -> None:
    answer = await cross_origin.client.options(
        "/graphql",
        headers={
            "origin": APP,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-session-cookie",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "x-session-cookie" in answer.headers["access-control-allow-headers"].lower()
    assert int(answer.headers["access-control-max-age"]) >= 600


async def test_any_origin_gets_no_credentials(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection, session: AsyncSession
) -> None:
    _, token = await _session_of(session)
    everyone = settings.model_copy(update={"cors_origins": ["*"]})
    async for api in _api(everyone, engine, connection, "https://api.example"):
        browser = Browser(api.client, origin="https://anyone.example")
        browser.cookie = token
        body = (await browser.post(REFRESH, {"input": {}}))["data"]["refreshSession"]
        # `*` names no origin: the cookie is refused, and no answer allows credentials.
        assert [e["code"] for e in body["userErrors"]] == ["FORBIDDEN"]
        assert "access-control-allow-credentials" not in browser.response.headers
        preflight = await api.client.options(
            "/graphql",
            headers={"origin": "https://anyone.example", "access-control-request-method": "POST"},
        )
        assert "access-control-allow-credentials" not in preflight.headers
    assert not await _revoked(session, token)


@pytest.mark.parametrize(
    ("database_url", "base_url", "secure"),
    [
        # The zero set-up default on a developer's machine: plain HTTP to loopback.
        (None, "http://127.0.0.1:8000", False),
        (None, "http://localhost:8000", False),
        (None, "https://localhost:8000", True),
        (None, "http://devbox.internal:8000", True),
        # A server given its own database is production, whatever its address.
        ("postgresql+asyncpg://db/taskgraph", "http://127.0.0.1:8000", True),
    ],
)
async def test_the_cookie_is_secure_except_on_plain_loopback_by_default(
    settings: Settings,
    engine: AsyncEngine,
    connection: AsyncConnection,
    session: AsyncSession,
    database_url: str | None,
    base_url: str,
    secure: bool,
) -> None:
    _, token = await _session_of(session)
    lax = settings.model_copy(
        update={"database_url": database_url, "session_cookie_samesite": "lax"}
    )
    async for api in _api(lax, engine, connection, base_url):
        browser = Browser(api.client)
        await browser.post(REFRESH, {"input": {"refreshToken": token}}, opt_in=True)
        assert browser.set is not None
        assert bool(browser.set.get("secure")) is secure
        assert browser.set["samesite"] == "lax"


async def test_an_api_client_sees_no_difference(api: Api, session: AsyncSession) -> None:
    """The bearer-token flow of partners and GraphiQL, as before (over plain HTTP too)."""
    _, token = await _session_of(session)
    response = await api.post(REFRESH, {"input": {"refreshToken": token}})
    assert "set-cookie" not in response.headers
    assert response.json()["data"]["refreshSession"]["refreshToken"].startswith("tgr_")


async def test_over_a_websocket_the_cookie_is_neither_set_nor_honoured(
    live: LiveApp, live_engine: AsyncEngine
) -> None:
    """A WebSocket's messages can set no cookie, and its handshake (which carries the
    browser's cookies) is no JSON POST: there the tokens stay in the payloads."""
    async with AsyncSession(live_engine, expire_on_commit=False) as session:
        _, token = await _session_of(session)
        _, cookie = await _session_of(session, "other")
    handshake = {"cookie": f"{COOKIE}={cookie}", "x-session-cookie": "1"}
    async with socket_to(live.ws, TRANSPORT_WS, handshake) as ws:
        assert (await ws.init())["type"] == "connection_ack"
        await ws.subscribe("given", REFRESH, {"input": {"refreshToken": token}})
        given = (await ws.next_message())["payload"]["data"]["refreshSession"]
        assert given["userErrors"] == [] and given["refreshToken"].startswith("tgr_")
        assert (await ws.next_message())["type"] == "complete"
        await ws.subscribe("cookie", REFRESH, {"input": {}})
        from_cookie = (await ws.next_message())["payload"]["data"]["refreshSession"]
        assert [e["field"] for e in from_cookie["userErrors"]] == [["input", "refreshToken"]]
        assert from_cookie["accessToken"] is None
    async with AsyncSession(live_engine) as session:
        assert not await _revoked(session, cookie)
