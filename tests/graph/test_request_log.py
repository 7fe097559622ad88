"""One log line per request, with its id, and no credential in any log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db import api_keys
from db.engine import make_engine
from db.models import ApiScope
from db.principals import user_principal
from graph import request_log
from graph.app import create_app
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import Api, token_for
from tests.graph.test_authentication import LOG_IN, LOG_OUT, REFRESH, SIGN_UP

JSON = {"content-type": "application/json"}
PASSWORD = "correct horse battery staple"


@contextmanager
def captured(logger: str = "") -> Iterator[io.StringIO]:
    """The lines `logger` (all of the process by default) writes meanwhile, through the JSON
    formatter, at every level; SQLAlchemy's statement log with its parameters included."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(request_log.Formatter())
    target = logging.getLogger(logger)
    engine_log = logging.getLogger("sqlalchemy.engine")
    levels = target.level, engine_log.level
    target.addHandler(handler)
    target.setLevel(logging.DEBUG)
    engine_log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        target.removeHandler(handler)
        target.setLevel(levels[0])
        engine_log.setLevel(levels[1])


async def test_each_request_has_an_id(api: Api, session: AsyncSession) -> None:
    world = await factories.world(session)
    owner = world.users["owner"].id
    query = "query Board { workspaces(first: 2) { nodes { slug } } }"
    given = await api.client.post(
        "/graphql",
        json={"query": query},
        headers={"authorization": f"Bearer {token_for(owner)}", "x-request-id": "trace-42"},
    )
    assert given.headers["x-request-id"] == "trace-42"
    made = await api.client.post(
        "/graphql", json={"query": "{ nope }"}, headers={"x-request-id": "bad id with spaces"}
    )
    made_id = made.headers["x-request-id"]
    assert made_id != "bad id with spaces" and len(made_id) == 32
    assert made.json()["errors"][0]["extensions"]["requestId"] == made_id


async def test_the_lines_say_what_an_operator_needs(committed_db: str, settings: Settings) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine) as session:
            owner = (await factories.user(session, "owner")).id
            await session.commit()
        app = create_app(settings, engine=engine)
        transport = httpx.ASGITransport(app=app)
        board = {"query": "query Board { workspaces(first: 2) { nodes { slug } } }"}
        auth = {"authorization": f"Bearer {token_for(owner)}", "x-request-id": "trace-42"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with captured("taskgraph.request") as out:
                await client.post("/graphql", json=board, headers=auth)
                await client.post("/graphql", json={"query": "{ nope }"})
                await client.post("/graphql", content=b"{", headers=JSON)
    finally:
        await engine.dispose()
    compiled, invalid, broken = (json.loads(line) for line in out.getvalue().splitlines())
    assert compiled["request_id"] == "trace-42"
    assert compiled["operation_name"] == "Board" and compiled["operation_type"] == "query"
    assert compiled["principal"] == f"user:{owner}"
    assert compiled["status"] == 200 and compiled["errors"] == []
    assert compiled["statements"] == 1  # the compiled statement
    assert compiled["cost"] == 4
    assert isinstance(compiled["duration_ms"], float)
    assert invalid["principal"] == "anonymous"
    assert invalid["errors"] == ["GRAPHQL_VALIDATION_FAILED"]
    assert broken["status"] == 400 and broken["errors"] == ["BAD_REQUEST"]


def test_every_logger_writes_through_the_one_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        request_log.configure("info", "json")
        logging.getLogger("sqlalchemy.engine.Engine").warning("a statement")
        logging.getLogger("uvicorn.error").error("a worker")
        logging.getLogger("taskgraph").debug("not at INFO")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    written = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["level"]) for line in written] == [
        ("sqlalchemy.engine.Engine", "WARNING"),
        ("uvicorn.error", "ERROR"),
    ]


async def test_no_credential_is_ever_logged(api: Api, session: AsyncSession) -> None:
    world = await factories.world(session)
    owner = await user_principal(session, world.users["owner"].id)
    assert owner is not None
    key = await api_keys.create_api_key(session, owner, world.workspace.id, "k", [ApiScope.WRITE])
    await session.commit()
    with captured() as out:
        signed = await api.data(
            SIGN_UP, {"input": {"email": "log@example.com", "name": "Log", "password": PASSWORD}}
        )
        access, refresh = signed["signUp"]["accessToken"], signed["signUp"]["refreshToken"]
        # Right and wrong credentials, in headers, variables and literals, on both paths.
        await api(LOG_IN, {"input": {"email": "log@example.com", "password": PASSWORD}})
        await api(LOG_IN, {"input": {"email": "log@example.com", "password": PASSWORD + "x"}})
        await api(
            'mutation { logIn(input: {email: "log@example.com", password: "'
            + PASSWORD
            + '"}) { accessToken } }'
        )
        rotated = await api.data(REFRESH, {"input": {"refreshToken": refresh}})
        second = rotated["refreshSession"]["refreshToken"]
        # And the browser session's cookie (graph/browser_sessions.py), set and sent back.
        in_cookie = await api.client.post(
            "/graphql",
            json={"query": REFRESH, "variables": {"input": {"refreshToken": second}}},
            headers={"x-session-cookie": "1"},
        )
        cookie = in_cookie.headers["set-cookie"].split(";", 1)[0]
        assert cookie.startswith("taskgraph_refresh=tgr_")
        await api.client.post(
            "/graphql",
            json={"query": REFRESH, "variables": {"input": {}}},
            headers={"cookie": cookie},
        )
        await api(LOG_OUT, {"input": {"refreshToken": second}})
        for token in (access, key.secret, key.secret + "x", "not-a-token"):
            await api("{ me { name } workspaces { totalCount } }", token=token)
            await api("{ __typename }", token=token)
            await api("{ nope }", token=token)
    text = out.getvalue()
    assert text.count('"taskgraph.request"') >= 16  # a line per request was written
    secrets = (PASSWORD, access, refresh, second, cookie.split("=", 1)[1], key.secret, "Bearer ")
    for secret in secrets:
        assert secret not in text, secret
