"""GraphiQL in a real browser: headless Chromium (Debian's `chromium`) opens the page of a live
`taskgraph serve`, the editors render, the headers editor holds the `Authorization` template, a
query run from the page returns data, and every request the page makes goes to the server's
own origin with no Content-Security-Policy violation.

Chromium is driven through the DevTools protocol over its pipe (`--remote-debugging-pipe`,
JSON messages separated by NUL bytes): no driver, no extra package, no port to pick. Every host
name but the server's resolves to nothing (`--host-resolver-rules`), so a file still fetched
from a CDN would fail to load and show up in the requests the test checks. The test fails, not
skips, when Chromium is missing (`.ci/run` installs it).

With `GRAPHIQL_SCREENSHOT=docs/graphiql.png` the test also writes its screenshot there (the
one kept in the repository is made so).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.graph.live_server import _start, _stop

ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1400, 860)


class Chromium:
    """Headless Chromium and one page, over the DevTools protocol's pipe."""

    def __init__(self, executable: str, profile: Path, allowed_host: str) -> None:
        flags = [
            "--headless",
            "--no-sandbox",  # the tests run as root in CI
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {allowed_host}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            # The protocol's pipe is file descriptors 3 (commands in) and 4 (messages out):
            # here the process's stdin and stdout, moved there by the shell before it execs.
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 1>&2', executable, *flags],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self.session = ""
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
            self.session = attached["sessionId"]
        except BaseException:
            self.close()
            raise

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        out = self.process.stdout.fileno()
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(out, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited:\n{self.log.read_text(errors='replace')}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            command["sessionId"] = self.session
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\0")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """The first truthy value of `expression`, polled; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"still false after {timeout} s: {expression}\n{self.problems()}")
            time.sleep(0.1)

    def drain(self) -> None:
        """Take in the events sent so far (a no-op round trip)."""
        self.evaluate("0")

    def click(self, selector: str) -> None:
        """A real mouse click on the centre of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def problems(self) -> str:
        errors = [
            event["params"]
            for event in self.events
            if event["method"] == "Runtime.exceptionThrown"
            or (
                event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error"
            )
        ]
        return f"page errors: {json.dumps(errors)[:3000]}"

    def close(self) -> None:
        """Browser.close, which ends Chromium's helper processes too; the process group is
        killed when it does not come."""
        try:
            self.session = ""
            self.call("Browser.close", timeout=5)
            self.process.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


# Collects the page's Content-Security-Policy violations (scripts added over the protocol run
# whatever the page's policy).
_WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI + " " + e.sourceFile);
});
"""

_EDITOR_VALUE = "document.querySelector({!r}).CodeMirror.getValue()"
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool > .graphiql-editor:not(.hidden) > .CodeMirror"
RESULT = ".graphiql-response .CodeMirror"


@pytest.fixture
def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "`chromium` is not on PATH: the GraphiQL browser test needs Debian's chromium package "
        "(`apt-get install chromium`; .ci/run installs it)",
        pytrace=False,
    )


@pytest.fixture
def browser(chromium_path: str, tmp_path: Path) -> Iterator[Chromium]:
    profile = tmp_path / "chromium"
    profile.mkdir()
    chromium = Chromium(chromium_path, profile, "127.0.0.1")
    try:
        yield chromium
    finally:
        chromium.close()


def _sign_up(graphql_url: str) -> tuple[str, str]:
    email = "graphiql@example.com"
    answer = httpx.post(
        graphql_url,
        json={
            "query": "mutation($input: SignUpInput!) { signUp(input: $input) "
            "{ accessToken userErrors { code } } }",
            "variables": {
                "input": {"email": email, "name": "Gra Phiql", "password": "a long passphrase 42"}
            },
        },
        timeout=30,
    ).json()
    token = answer["data"]["signUp"]["accessToken"]
    assert token, answer
    return email, token


def _in_browser(browser: Chromium, graphql_url: str) -> bytes:
    origin = graphql_url.rsplit("/graphql", 1)[0]
    # The policy the browser is held to (test_graphiql_page.py checks it whole).
    policy = httpx.get(graphql_url, headers={"Accept": "text/html"}).headers
    policy = policy["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert "unsafe" not in policy and "http" not in policy
    email, token = _sign_up(graphql_url)
    for domain in ("Page", "Network", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    browser.call("Page.addScriptToEvaluateOnNewDocument", source=_WATCH_VIOLATIONS)

    # The page as a person first opens it: the editors, and the headers editor's template.
    browser.call("Page.navigate", url=graphql_url)
    browser.wait_for(f"document.querySelector('.graphiql-container {QUERY_EDITOR}') !== null")
    # The headers editor is the one shown (the variables editor is hidden).
    tab = "document.querySelector('.graphiql-editor-tools button.active')?.innerText"
    assert browser.wait_for(tab) == "Headers"
    headers = browser.wait_for(_EDITOR_VALUE.format(HEADERS_EDITOR))
    assert json.loads(headers) == {"Authorization": "Bearer "}
    assert "me {" in browser.evaluate(_EDITOR_VALUE.format(QUERY_EDITOR))
    # The schema came (the introspection query, without the template's empty credentials):
    # the explorer lists the root fields.
    browser.click(".graphiql-sidebar button[aria-label='Show GraphiQL Explorer']")
    browser.wait_for("document.querySelector('.graphiql-explorer-root')?.innerText.includes('me')")

    # A query with its token in the headers editor, run with the run button.
    query = "{\n  me {\n    name\n    email\n  }\n}"
    search = urllib.parse.urlencode(
        {"q": query, "headers": json.dumps({"Authorization": f"Bearer {token}"})}
    )
    browser.call("Page.navigate", url=f"{graphql_url}?{search}")
    browser.wait_for(f"document.querySelector('.graphiql-container {RESULT}') !== null")
    browser.wait_for(f"{_EDITOR_VALUE.format(QUERY_EDITOR)}.includes('email')")
    browser.click(".graphiql-execute-button")
    result = browser.wait_for(
        f"(() => {{ const v = {_EDITOR_VALUE.format(RESULT)}; "
        f"return v.includes('email') ? v : ''; }})()"
    )
    assert json.loads(result)["data"] == {"me": {"name": "Gra Phiql", "email": email}}

    # The explorer plugin, open beside the answer (and in the screenshot).
    browser.click(".graphiql-sidebar button[aria-label='Show GraphiQL Explorer']")
    browser.wait_for("document.querySelector('.graphiql-explorer-root')?.innerText.includes('me')")
    shot = browser.call("Page.captureScreenshot", format="png")

    # A dialog adds GraphiQL's one run-time <style> element, allowed by the page's nonce.
    browser.click(".graphiql-sidebar button[aria-label='Open settings dialog']")
    browser.wait_for("document.querySelector('.graphiql-dialog') !== null")
    browser.wait_for("document.querySelector('head style[nonce]') !== null")

    violations = browser.evaluate("window.__violations")
    assert violations == [], violations
    browser.drain()
    requests = [
        event["params"]["request"]["url"]
        for event in browser.events
        if event["method"] == "Network.requestWillBeSent"
    ]
    assert any(url.endswith("/graphiql/vendor/graphiql.min.js") for url in requests), requests
    assert [url for url in requests if not url.startswith(f"{origin}/")] == []
    statuses = {
        event["params"]["response"]["url"]: event["params"]["response"]["status"]
        for event in browser.events
        if event["method"] == "Network.responseReceived"
    }
    assert {url: status for url, status in statuses.items() if status != 200} == {}
    assert not [e for e in browser.events if e["method"] == "Runtime.exceptionThrown"], (
        browser.problems()
    )
    return base64.b64decode(shot["data"])


async def test_graphiql_runs_a_query_in_chromium_from_the_servers_own_origin(
    browser: Chromium, committed_db: str, tmp_path: Path
) -> None:
    process, server = await asyncio.to_thread(_start, committed_db, tmp_path)
    try:
        try:
            png = await asyncio.to_thread(_in_browser, browser, server.url)
        except BaseException:
            print(f"server log:\n{server.output()}\n{browser.problems()}")
            raise
    finally:
        await asyncio.to_thread(_stop, process)
    assert png.startswith(b"\x89PNG")
    (tmp_path / "graphiql.png").write_bytes(png)
    if target := os.environ.get("GRAPHIQL_SCREENSHOT"):
        (ROOT / target).write_bytes(png)
