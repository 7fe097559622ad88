"""GraphiQL served from the server's own origin: the page (on a browser's GET of /graphql) and
its files under /graphiql/ (graph/static/graphiql/: the vendored bundles, refreshed by
graph/graphiql_assets.py, and the page's own start.js and page.css).

Nothing comes from another origin, so the page works offline and its Content-Security-Policy
allows the server's origin only: every script and style is a file, and the one <style> element
GraphiQL adds at run time (when a dialog opens) carries the page's nonce. No 'unsafe-inline',
no 'unsafe-eval'.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

FILES = Path(__file__).with_name("static") / "graphiql"
PREFIX = "/graphiql"

_PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Taskgraph GraphiQL</title>
    <link rel="icon" href="{p}/favicon.svg" type="image/svg+xml">
    <link rel="stylesheet" href="{p}/vendor/graphiql.min.css">
    <link rel="stylesheet" href="{p}/vendor/plugin-explorer.css">
    <link rel="stylesheet" href="{p}/page.css">
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    <script src="{p}/vendor/react.production.min.js"></script>
    <script src="{p}/vendor/react-dom.production.min.js"></script>
    <script src="{p}/vendor/graphiql.min.js"></script>
    <script src="{p}/vendor/plugin-explorer.umd.js"></script>
    <script src="{p}/start.js" nonce="{nonce}"></script>
  </body>
</html>
"""


def content_security_policy(nonce: str) -> str:
    # 'self' takes in ws:/wss: to the same host and port (CSP level 3): subscriptions.
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            "font-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def page() -> HTMLResponse:
    """The page, with a fresh nonce in its policy and on its start script."""
    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(
        _PAGE.format(p=PREFIX, nonce=nonce),
        headers={
            "Content-Security-Policy": content_security_policy(nonce),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def mount_files(app: Starlette) -> None:
    """Serve GraphiQL's files under PREFIX (only when GraphiQL is on)."""
    app.mount(PREFIX, StaticFiles(directory=FILES), name="graphiql")
