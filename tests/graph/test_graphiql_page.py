"""The GraphiQL page and its files, without a browser: the vendored files are the pinned ones,
the page references only files the server has, its policy allows the server's origin only, and
none of it is served when GraphiQL is off (test_graphiql_browser.py runs it in Chromium)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from shutil import copytree

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from graph import graphiql, graphiql_assets
from graph.settings import Settings
from tests.graph.conftest import SECRET, Api, _api


def test_the_vendored_files_are_the_pinned_packages() -> None:
    assert graphiql_assets.verify() == []
    names = {path.name for path in graphiql_assets.VENDOR.iterdir()}
    for package in graphiql_assets.PACKAGES:
        # Each package's licence travels with its files (plugin-explorer ships none of its
        # own: it is the graphiql repository's, LICENSE.graphiql).
        licences = [name for name in package.files.values() if name.startswith("LICENSE")]
        assert licences or "LICENSE.graphiql" in package.license_note, package.name
        assert set(licences) <= names


def test_a_changed_vendored_file_is_found(tmp_path: Path) -> None:
    folder = tmp_path / "vendor"
    copytree(graphiql_assets.VENDOR, folder)
    (folder / "react.production.min.js").write_text("/* changed */")
    (folder / "extra.js").write_text("")
    assert graphiql_assets.verify(folder) == [
        "extra.js is not in manifest.json",
        "react.production.min.js differs from manifest.json",
    ]


async def test_the_page_loads_its_files_from_the_server_under_a_strict_policy(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    nonce = re.search(r'nonce="([^"]+)"', page.text)
    assert nonce is not None
    assert directives == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": f"'self' 'nonce-{nonce.group(1)}'",
        "font-src": "'self'",
        "img-src": "'self'",
        "connect-src": "'self'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }
    # No inline script or style: everything is a file of the server's.
    assert "<style" not in page.text
    assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(references) == 9
    for reference in references:
        assert reference.startswith("/graphiql/"), reference
        file = await api.client.get(reference)
        assert file.status_code == 200, reference
        assert file.headers["content-type"].split(";")[0] in {
            "text/javascript",
            "text/css",
            "image/svg+xml",
        }
    # A fresh nonce for every page.
    again = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert again.headers["content-security-policy"] != policy


async def test_the_stylesheets_take_their_fonts_and_images_from_the_server(api: Api) -> None:
    css = (await api.client.get("/graphiql/vendor/graphiql.min.css")).text
    urls = re.findall(r"url\(([^)]*)\)", css)
    assert urls and all(url.startswith("files/") for url in urls), urls[:5]
    for url in sorted(set(urls))[:3]:
        assert (await api.client.get(f"/graphiql/vendor/{url}")).status_code == 200
    assert graphiql.PREFIX == "/graphiql"


@pytest.fixture
async def production(engine: AsyncEngine, connection: AsyncConnection) -> AsyncIterator[Api]:
    settings = Settings(database_url="postgresql+asyncpg://unused/test", secret_key=SECRET)
    assert not settings.graphiql_enabled
    async for value in _api(settings, engine, connection):
        yield value


async def test_no_graphiql_files_when_graphiql_is_off(production: Api) -> None:
    for path in ("/graphiql/start.js", "/graphiql/vendor/graphiql.min.js"):
        assert (await production.client.get(path)).status_code == 404
