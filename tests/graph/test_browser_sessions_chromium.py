"""Browser sessions in headless Chromium (tests/graph/chromium.py): a single-page app served
from an allowed origin logs in with the refresh token in the cookie, reloads (its access token,
kept in memory, is gone), refreshes from the cookie and reads `me`; the cookie is not readable
from `document.cookie`; pages of other origins cannot refresh, nor can a forged form post;
logOut clears the cookie.

The API is a live `taskgraph serve` on 127.0.0.1 whose CORS_ORIGINS names one page server of
the test's own, on another port of 127.0.0.1 (another origin of the same site, as an app on
app.example.com beside an API on api.example.com). Two pages are not allowed: the same server
reached as `localhost` (another site) and a second page server on 127.0.0.1 (the same site, so
the `SameSite` cookie goes with its requests and only CORS and the server stop it). Pages are
served under /graphql/, the cookie's path, so that `document.cookie` would show the cookie but
for `HttpOnly`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from graph.browser_sessions import COOKIE
from tests.graph.chromium import Chromium
from tests.graph.live_server import serving

EMAIL = "spa@example.com"
PASSWORD = "a long passphrase 42"
PAGE_PATH = "/graphql/app.html"

# The app: the access token in a variable, never in storage; the refresh token never seen.
APP = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head><body>
<script>
const API = new URLSearchParams(location.search).get("api");
let accessToken = null;
const FIELDS = "accessToken refreshToken user { name } userErrors { code field message }";

async function call(query, variables, sessionCookie) {
  const headers = { "content-type": "application/json" };
  if (sessionCookie) headers["x-session-cookie"] = "1";
  if (accessToken) headers["authorization"] = "Bearer " + accessToken;
  try {
    const response = await fetch(API, {
      method: "POST", credentials: "include", headers,
      body: JSON.stringify({ query, variables }),
    });
    return await response.json();
  } catch (error) {
    return { failed: String(error) };
  }
}

window.app = {
  hasToken: () => accessToken !== null,
  async logIn(email, password) {
    const body = await call(
      `mutation($input: LogInInput!) { logIn(input: $input) { ${FIELDS} } }`,
      { input: { email, password } }, true);
    accessToken = body.data.logIn.accessToken;
    return body;
  },
  async refresh() {
    const body = await call(
      `mutation { refreshSession(input: {}) { ${FIELDS} } }`, {}, true);
    if (body.data) accessToken = body.data.refreshSession.accessToken;
    return body;
  },
  me: () => call("{ me { name email } }", {}, false),
  async logOut() {
    const body = await call("mutation { logOut(input: {}) { ok userErrors { code } } }", {}, true);
    accessToken = null;
    return body;
  },
  // What a page of another origin can send without a preflight: a "simple" request, whose
  // answer it may not read.
  async forge() {
    await fetch(API, {
      method: "POST", mode: "no-cors", credentials: "include",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify({ query: "mutation { refreshSession(input: {}) { accessToken } }" }),
    });
    return "sent";
  },
};
</script></body></html>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != PAGE_PATH:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(APP)))
        self.end_headers()
        self.wfile.write(APP)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _page_server() -> Iterator[int]:
    """The app's static files on a free port of 127.0.0.1, on a thread of the test's own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _sign_up(api: str) -> None:
    answer = httpx.post(
        api,
        json={
            "query": "mutation($input: SignUpInput!) { signUp(input: $input) "
            "{ userErrors { code } } }",
            "variables": {"input": {"email": EMAIL, "name": "Spa User", "password": PASSWORD}},
        },
        timeout=30,
    ).json()
    assert answer["data"]["signUp"]["userErrors"] == [], answer


def _open(browser: Chromium, url: str) -> None:
    # A marker that the old document had and the new one lacks: the page was really loaded.
    browser.evaluate("window.__old = true")
    browser.call("Page.navigate", url=url)
    browser.wait_for("!window.__old && typeof window.app === 'object'")


def _cookie(browser: Chromium, api: str) -> dict[str, Any] | None:
    """The session cookie as Chromium keeps it for the API (HttpOnly ones included)."""
    cookies = browser.call("Network.getCookies", urls=[api])["cookies"]
    found = [cookie for cookie in cookies if cookie["name"] == COOKIE]
    assert len(found) <= 1, found
    return found[0] if found else None


def _in_browser(browser: Chromium, api: str, allowed: str, others: list[str]) -> None:
    for domain in ("Page", "Network", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    _sign_up(api)
    query = "?" + urllib.parse.urlencode({"api": api})

    # Log in on the allowed origin: the refresh token goes into the cookie, not to the page.
    _open(browser, allowed + PAGE_PATH + query)
    logged_in = browser.evaluate(
        f"app.logIn({json.dumps(EMAIL)}, {json.dumps(PASSWORD)})", awaited=True
    )
    payload = logged_in["data"]["logIn"]
    assert payload["userErrors"] == [] and payload["accessToken"], logged_in
    assert payload["refreshToken"] is None
    cookie = _cookie(browser, api)
    assert cookie is not None, browser.problems()
    assert cookie["httpOnly"] is True and cookie["secure"] is True
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/graphql"
    assert 29.9 * 86400 < cookie["expires"] - time.time() <= 30 * 86400
    # No script of the page can read it, although the page is under the cookie's path.
    assert COOKIE not in browser.evaluate("document.cookie")
    assert browser.evaluate("app.me()", awaited=True)["data"]["me"]["name"] == "Spa User"

    # A reload: the access token is gone; the cookie brings the session back.
    _open(browser, allowed + PAGE_PATH + query)
    assert browser.evaluate("app.hasToken()") is False
    assert browser.evaluate("app.me()", awaited=True)["data"] == {"me": None}
    refreshed = browser.evaluate("app.refresh()", awaited=True)
    assert refreshed["data"]["refreshSession"]["userErrors"] == [], refreshed
    assert refreshed["data"]["refreshSession"]["refreshToken"] is None
    me = browser.evaluate("app.me()", awaited=True)["data"]["me"]
    assert me == {"name": "Spa User", "email": EMAIL}
    rotated = _cookie(browser, api)
    assert rotated is not None and rotated["value"] != cookie["value"]
    assert COOKIE not in browser.evaluate("document.cookie")

    # Pages of other origins: the refresh fails in the browser (no allowed preflight), and a
    # forged simple request is refused by the server; the session is untouched.
    for other in others:
        _open(browser, other + PAGE_PATH + query)
        failed = browser.evaluate("app.refresh()", awaited=True)
        assert "failed" in failed, (other, failed)
        assert browser.evaluate("app.hasToken()") is False
        assert browser.evaluate("app.forge()", awaited=True) == "sent"
        assert _cookie(browser, api) == rotated, other

    # Back on the allowed origin the session still works; logOut ends it and clears the cookie.
    _open(browser, allowed + PAGE_PATH + query)
    again = browser.evaluate("app.refresh()", awaited=True)
    assert again["data"]["refreshSession"]["accessToken"], again
    out = browser.evaluate("app.logOut()", awaited=True)
    assert out["data"]["logOut"] == {"ok": True, "userErrors": []}
    assert _cookie(browser, api) is None
    after = browser.evaluate("app.refresh()", awaited=True)["data"]["refreshSession"]
    assert after["accessToken"] is None
    assert [e["field"] for e in after["userErrors"]] == [["input", "refreshToken"]]
    # Every request of the forged kind reached the server and was refused (415).
    browser.drain()
    statuses = [
        event["params"]["response"]["status"]
        for event in browser.events
        if event["method"] == "Network.responseReceived"
        and event["params"]["response"]["url"] == api
        and event["params"]["type"] == "Fetch"
    ]
    assert statuses.count(415) == len(others), statuses


async def test_a_single_page_app_keeps_its_session_in_the_cookie(
    chromium: Chromium, committed_db: str, tmp_path: Path
) -> None:
    with _page_server() as allowed_port, _page_server() as other_port:
        allowed = f"http://127.0.0.1:{allowed_port}"
        others = [f"http://localhost:{allowed_port}", f"http://127.0.0.1:{other_port}"]
        async with serving(committed_db, tmp_path, {"CORS_ORIGINS": allowed}) as server:
            try:
                await asyncio.to_thread(_in_browser, chromium, server.url, allowed, others)
            except BaseException:
                print(f"server log:\n{server.output()}\n{chromium.problems()}")
                raise
