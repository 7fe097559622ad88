"""GraphiQL in a real browser: headless Chromium (Debian's `chromium`) opens the page of a live
`taskgraph serve`, the editors render, the headers editor holds the `Authorization` template, a
query run from the page returns data, a subscription run from it shows a change made
meanwhile, and every request the page makes goes to the server's own origin with no
Content-Security-Policy violation.

Chromium comes from tests/graph/chromium.py: every host name but the loopback ones resolves to
nothing, so a file still fetched from a CDN would fail to load and show up in the requests the
test checks.

With `GRAPHIQL_SCREENSHOT=docs/graphiql.png` the test also writes its screenshot there (the
one kept in the repository is made so).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from tests.graph.chromium import Chromium
from tests.graph.live_server import _start, _stop

ROOT = Path(__file__).resolve().parents[2]


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


CREATE_TASK = """mutation($p: ID!, $t: String!) {
  createTask(input: {projectId: $p, title: $t}) { task { id } } }"""


def _call(graphql_url: str, token: str, query: str, variables: dict[str, Any]) -> Any:
    answer = httpx.post(
        graphql_url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    assert "errors" not in answer, answer
    return answer["data"]


def _workspace_with_project(graphql_url: str, token: str) -> tuple[str, str]:
    workspace = _call(
        graphql_url,
        token,
        'mutation { createWorkspace(input: {name: "Live", slug: "live"}) { workspace { id } } }',
        {},
    )["createWorkspace"]["workspace"]["id"]
    project = _call(
        graphql_url,
        token,
        'mutation($w: ID!) { createProject(input: {workspaceId: $w, key: "LIV", name: "Live"}) '
        "{ project { id } } }",
        {"w": workspace},
    )["createProject"]["project"]["id"]
    return workspace, project


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

    # A subscription run from the page streams over the server's own WebSocket (its
    # credentials from the headers editor, as GraphiQL sends them in connection_init).
    workspace, project = _workspace_with_project(graphql_url, token)
    subscription = (
        f'subscription {{\n  taskEvents(workspaceId: "{workspace}") {{\n'
        "    kind\n    task {\n      title\n    }\n  }\n}"
    )
    search = urllib.parse.urlencode(
        {"q": subscription, "headers": json.dumps({"Authorization": f"Bearer {token}"})}
    )
    browser.call("Page.navigate", url=f"{graphql_url}?{search}")
    browser.wait_for(f"document.querySelector('.graphiql-container {RESULT}') !== null")
    browser.wait_for(f"{_EDITOR_VALUE.format(QUERY_EDITOR)}.includes('taskEvents')")
    browser.click(".graphiql-execute-button")
    # Changes are made until one shows: the subscription may not have joined yet.
    for attempt in range(50):
        _call(graphql_url, token, CREATE_TASK, {"p": project, "t": f"Seen live {attempt}"})
        seen = browser.evaluate(_EDITOR_VALUE.format(RESULT))
        if "Seen live" in seen:
            break
        time.sleep(0.2)
    event = json.loads(seen)["data"]["taskEvents"]
    assert event["kind"] == "CREATED" and event["task"]["title"].startswith("Seen live"), seen
    browser.click(".graphiql-execute-button")  # stops it

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
    chromium: Chromium, committed_db: str, tmp_path: Path
) -> None:
    process, server = await asyncio.to_thread(_start, committed_db, tmp_path)
    try:
        try:
            png = await asyncio.to_thread(_in_browser, chromium, server.url)
        except BaseException:
            print(f"server log:\n{server.output()}\n{chromium.problems()}")
            raise
    finally:
        await asyncio.to_thread(_stop, process)
    assert png.startswith(b"\x89PNG")
    (tmp_path / "graphiql.png").write_bytes(png)
    if target := os.environ.get("GRAPHIQL_SCREENSHOT"):
        (ROOT / target).write_bytes(png)
