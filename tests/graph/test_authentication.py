"""Sign-up, log-in, refresh-token rotation, log-out, access tokens and API keys, end to end."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import Unauthenticated
from db.models import ApiKey, RefreshToken, User
from graph import auth as auth_module
from graph.auth import issue_access_token, user_id_from_token
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import SECRET, Api, token_for

SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  user { id name email } accessToken refreshToken expiresAt userErrors { field message code } } }"""
LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) {
  user { name } accessToken refreshToken userErrors { field message code } } }"""
REFRESH = """mutation($input: RefreshSessionInput!) { refreshSession(input: $input) {
  user { name } accessToken refreshToken userErrors { field message code } } }"""
LOG_OUT = """mutation($input: LogOutInput!) { logOut(input: $input) {
  ok userErrors { field message code } } }"""
ME = "{ me { name email } workspaces { totalCount nodes { slug viewerRole } } }"


async def sign_up(
    api: Api, email: str, name: str = "Ada", password: str = "long enough pw"
) -> dict[str, Any]:
    body = await api.data(SIGN_UP, {"input": {"email": email, "name": name, "password": password}})
    return body["signUp"]  # type: ignore[no-any-return]


async def test_sign_up_signs_in_and_stores_only_hashes(api: Api, session: AsyncSession) -> None:
    before = datetime.now(UTC)
    payload = await sign_up(api, "ada@example.com")
    assert payload["userErrors"] == []
    assert payload["user"]["email"] == "ada@example.com"
    expires = datetime.fromisoformat(payload["expiresAt"])
    assert timedelta(minutes=14) < expires - before <= timedelta(minutes=15, seconds=5)
    me = await api.data(ME, token=payload["accessToken"])
    assert me["me"] == {"name": "Ada", "email": "ada@example.com"}
    stored = await session.scalar(select(User.password_hash).where(User.email == "ada@example.com"))
    assert stored is not None and stored.startswith("$argon2")
    token_hash = await session.scalar(select(RefreshToken.token_hash))
    assert token_hash == hashlib.sha256(payload["refreshToken"].encode()).hexdigest()


@pytest.mark.parametrize(
    ("email", "name", "password", "fields"),
    [
        ("not-an-email", "Ada", "long enough pw", [["input", "email"]]),
        ("ada@example.com", "   ", "long enough pw", [["input", "name"]]),
        ("ada@example.com", "Ada", "short", [["input", "password"]]),
        ("ada@example.com", "Ada", "x" * 257, [["input", "password"]]),
        ("bad", "", "short", [["input", "email"], ["input", "name"], ["input", "password"]]),
        ("a\x00@example.com", "Ada", "long enough pw", [["input", "email"]]),
    ],
)
async def test_sign_up_validation(
    api: Api, email: str, name: str, password: str, fields: list[list[str]]
) -> None:
    payload = await sign_up(api, email, name, password)
    assert [e["field"] for e in payload["userErrors"]] == fields
    assert {e["code"] for e in payload["userErrors"]} == {"INVALID"}
    assert payload["accessToken"] is None and payload["refreshToken"] is None


async def test_sign_up_with_a_taken_email_in_another_case(api: Api) -> None:
    await sign_up(api, "Foo@Example.com")
    payload = await sign_up(api, "foo@example.com")
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", "email"], "TAKEN")
    ]


async def test_log_in(api: Api, session: AsyncSession) -> None:
    await factories.user(session, "bob", email="bob@example.com")
    await session.commit()
    ok = (
        await api.data(
            LOG_IN, {"input": {"email": "BOB@example.com", "password": factories.PASSWORD}}
        )
    )["logIn"]
    assert ok["userErrors"] == [] and ok["user"] == {"name": "bob"} and ok["accessToken"]
    wrong_password = (
        await api.data(LOG_IN, {"input": {"email": "bob@example.com", "password": "nope nope"}})
    )["logIn"]
    unknown = (
        await api.data(LOG_IN, {"input": {"email": "who@example.com", "password": "nope nope"}})
    )["logIn"]
    # The same answer for both: log-in does not tell which e-mail addresses have accounts.
    assert wrong_password == unknown
    assert wrong_password["accessToken"] is None
    assert [e["code"] for e in wrong_password["userErrors"]] == ["INVALID"]
    # Input the database or the hasher could not take is just another wrong log-in.
    for email, password in (("bob\x00@example.com", "x"), ("bob@example.com", "\ud800"), ("", "")):
        # ASCII-escaped JSON carries a lone surrogate, which a client library would refuse.
        raw = json.dumps(
            {"query": LOG_IN, "variables": {"input": {"email": email, "password": password}}}
        )
        response = await api.client.post(
            "/graphql", content=raw, headers={"content-type": "application/json"}
        )
        assert response.json()["data"]["logIn"] == wrong_password


async def _refresh(api: Api, token: str) -> dict[str, Any]:
    return (await api.data(REFRESH, {"input": {"refreshToken": token}}))["refreshSession"]  # type: ignore[no-any-return]


async def test_refresh_rotates_and_reuse_revokes_the_chain(api: Api, session: AsyncSession) -> None:
    first = (await sign_up(api, "eve@example.com"))["refreshToken"]
    second = await _refresh(api, first)
    assert second["userErrors"] == [] and second["refreshToken"] != first
    assert second["user"] == {"name": "Ada"}
    assert (await api.data(ME, token=second["accessToken"]))["me"]["name"] == "Ada"
    revoked = await session.scalar(
        select(RefreshToken.revoked_at).where(
            RefreshToken.token_hash == hashlib.sha256(first.encode()).hexdigest()
        )
    )
    assert revoked is not None
    third = await _refresh(api, second["refreshToken"])
    assert third["userErrors"] == []
    # The old token again: taken as stolen, so the newest one stops working too.
    reused = await _refresh(api, first)
    assert [e["code"] for e in reused["userErrors"]] == ["INVALID"]
    assert (await _refresh(api, third["refreshToken"]))["userErrors"][0]["code"] == "INVALID"


async def test_expired_and_garbage_refresh_tokens(api: Api, session: AsyncSession) -> None:
    token = (await sign_up(api, "old@example.com"))["refreshToken"]
    await session.execute(
        update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    assert (await _refresh(api, token))["userErrors"][0]["field"] == ["input", "refreshToken"]
    assert (await _refresh(api, "tgr_garbage"))["userErrors"][0]["code"] == "INVALID"


async def test_log_out_ends_the_session(api: Api) -> None:
    token = (await sign_up(api, "out@example.com"))["refreshToken"]
    out = (await api.data(LOG_OUT, {"input": {"refreshToken": token}}))["logOut"]
    assert out == {"ok": True, "userErrors": []}
    assert (await _refresh(api, token))["userErrors"][0]["code"] == "INVALID"
    unknown = (await api.data(LOG_OUT, {"input": {"refreshToken": "tgr_unknown"}}))["logOut"]
    assert unknown["ok"] is False and unknown["userErrors"][0]["code"] == "INVALID"


def _forged(user_id: int) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": "taskgraph",
        "typ": "access",
    }
    return jwt.encode(claims, "another-key-" + "x" * 40, algorithm="HS256")


@pytest.mark.parametrize(
    "header",
    [
        lambda uid: f"Bearer {issue_access_token(SECRET, uid, timedelta(minutes=-1))[0]}",
        lambda uid: f"Bearer {_forged(uid)}",
        lambda uid: "Basic dXNlcjpwYXNz",
        lambda uid: "Bearer",
        lambda uid: "Bearer not.a.jwt",
        lambda uid: "Bearer tgk_nope",
    ],
    ids=["expired", "forged", "basic", "empty-bearer", "garbage", "malformed-key"],
)
async def test_bad_credentials_are_unauthenticated(
    api: Api, session: AsyncSession, header: Any
) -> None:
    user = await factories.user(session)
    await session.commit()
    response = await api.client.post(
        "/graphql", json={"query": ME}, headers={"authorization": header(user.id)}
    )
    body = response.json()
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_anonymous_and_deleted_users(api: Api, session: AsyncSession) -> None:
    assert await api.data(ME) == {"me": None, "workspaces": {"totalCount": 0, "nodes": []}}
    user = await factories.user(session)
    await session.commit()
    token = token_for(user.id)
    await session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    await session.commit()
    body = await api(ME, token=token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


CREATE_KEY = """mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) {
  secret apiKey { id prefix scopes name createdBy { name } } userErrors { field code } } }"""
REVOKE_KEY = """mutation($input: RevokeApiKeyInput!) { revokeApiKey(input: $input) {
  apiKey { revokedAt } userErrors { field code } } }"""


async def test_api_keys(api: Api, session: AsyncSession) -> None:
    w = await factories.world(session)
    await session.commit()
    ws = to_global_id("Workspace", w.workspace.id)
    created = (
        await api.data(
            CREATE_KEY,
            {"input": {"workspaceId": ws, "name": "CI", "scopes": ["WRITE"]}},
            token=token_for(w.users["admin"].id),
        )
    )["createApiKey"]
    secret = created["secret"]
    assert secret.startswith("tgk_") and secret.startswith(created["apiKey"]["prefix"] + "_")
    assert created["apiKey"]["scopes"] == ["READ", "WRITE"]
    assert created["apiKey"]["createdBy"] == {"name": "admin"}
    row = (await session.execute(select(ApiKey))).scalars().one()
    assert secret not in (row.secret_hash, row.prefix, row.name)

    as_key = await api.data(ME, token=secret)
    assert as_key == {
        "me": None,
        "workspaces": {"totalCount": 1, "nodes": [{"slug": w.workspace.slug, "viewerRole": None}]},
    }
    first_use = await session.scalar(select(ApiKey.last_used_at))
    assert first_use is not None
    await api.data(ME, token=secret)
    assert (
        await session.scalar(select(ApiKey.last_used_at)) == first_use
    )  # not rewritten within a minute
    await session.execute(update(ApiKey).values(last_used_at=first_use - timedelta(minutes=2)))
    await session.commit()
    await api.data(ME, token=secret)
    assert await session.scalar(select(ApiKey.last_used_at)) > first_use - timedelta(minutes=2)

    listed = await api.data(
        "query($s: String!) { workspace(slug: $s) { apiKeys { prefix } } }",
        {"s": w.workspace.slug},
        token=token_for(w.users["owner"].id),
    )
    assert listed["workspace"]["apiKeys"] == [{"prefix": created["apiKey"]["prefix"]}]
    hidden = await api(
        "query($s: String!) { workspace(slug: $s) { apiKeys { prefix } } }",
        {"s": w.workspace.slug},
        token=token_for(w.users["member"].id),
    )
    assert hidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    wrong_secret = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    assert (await api(ME, token=wrong_secret))["errors"][0]["extensions"][
        "code"
    ] == "UNAUTHENTICATED"
    by_member = (
        await api.data(
            REVOKE_KEY,
            {"input": {"id": created["apiKey"]["id"]}},
            token=token_for(w.users["member"].id),
        )
    )["revokeApiKey"]
    assert by_member["userErrors"][0]["code"] == "FORBIDDEN"
    revoked = (
        await api.data(
            REVOKE_KEY,
            {"input": {"id": created["apiKey"]["id"]}},
            token=token_for(w.users["owner"].id),
        )
    )["revokeApiKey"]
    assert revoked["apiKey"]["revokedAt"] is not None
    assert (await api(ME, token=secret))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("who", "values", "code"),
    [
        ("member", {"name": "k", "scopes": ["READ"]}, "FORBIDDEN"),
        ("viewer", {"name": "k", "scopes": ["READ"]}, "FORBIDDEN"),
        ("outsider", {"name": "k", "scopes": ["READ"]}, "NOT_FOUND"),
        ("owner", {"name": "  ", "scopes": ["READ"]}, "INVALID"),
        ("owner", {"name": "k", "scopes": []}, "INVALID"),
    ],
)
async def test_create_api_key_refusals(
    api: Api, session: AsyncSession, who: str, values: dict[str, Any], code: str
) -> None:
    w = await factories.world(session)
    await session.commit()
    payload = (
        await api.data(
            CREATE_KEY,
            {"input": {"workspaceId": to_global_id("Workspace", w.workspace.id), **values}},
            token=token_for(w.users[who].id),
        )
    )["createApiKey"]
    assert payload["secret"] is None and payload["apiKey"] is None
    assert [e["code"] for e in payload["userErrors"]] == [code]


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token, expires_at = issue_access_token(SECRET, 42, timedelta(minutes=1))
    assert user_id_from_token(SECRET, token) == 42
    assert user_id_from_token(SECRET, token) == 42  # from the cache of verified tokens
    monkeypatch.setattr(auth_module.time, "time", lambda: expires_at.timestamp() + 1)
    with pytest.raises(Unauthenticated, match="expired"):
        user_id_from_token(SECRET, token)


def test_a_token_is_verified_against_the_key_it_is_checked_with() -> None:
    token, _ = issue_access_token(SECRET, 42, timedelta(minutes=1))
    assert user_id_from_token(SECRET, token) == 42
    with pytest.raises(Unauthenticated):
        user_id_from_token(SECRET + "-rotated", token)


# Mutations an anonymous caller may not run, with inputs naming objects that exist, objects
# that do not, and malformed IDs: the answer is the same whatever exists.
ANONYMOUS_MUTATIONS = [
    ("createWorkspace", "CreateWorkspaceInput", lambda w: {"name": "N", "slug": "anon-ws"}),
    ("updateWorkspace", "UpdateWorkspaceInput", lambda w: {"id": w["ws"], "name": "R"}),
    (
        "addMember",
        "AddMemberInput",
        lambda w: {"workspaceId": w["ws"], "email": "x@example.com", "role": "VIEWER"},
    ),
    (
        "createProject",
        "CreateProjectInput",
        lambda w: {"workspaceId": w["ws"], "key": "AN", "name": "A"},
    ),
    ("createTask", "CreateTaskInput", lambda w: {"projectId": w["project"], "title": "T"}),
    ("updateTask", "UpdateTaskInput", lambda w: {"id": w["missing_task"], "title": "T"}),
    ("deleteTask", "DeleteTaskInput", lambda w: {"id": w["task"]}),
    (
        "createLabel",
        "CreateLabelInput",
        lambda w: {"workspaceId": w["ws"], "name": "l", "color": "#000000"},
    ),
    ("addComment", "AddCommentInput", lambda w: {"taskId": w["task"], "body": "hi"}),
    ("deleteComment", "DeleteCommentInput", lambda w: {"id": "not-an-id"}),
    (
        "createApiKey",
        "CreateApiKeyInput",
        lambda w: {"workspaceId": w["missing_ws"], "name": "k", "scopes": ["READ"]},
    ),
    ("revokeApiKey", "RevokeApiKeyInput", lambda w: {"id": w["missing_key"]}),
]


async def test_anonymous_callers_of_mutations_are_unauthenticated(
    api: Api, session: AsyncSession
) -> None:
    w = await factories.world(session)
    await session.commit()
    ids = {
        "ws": to_global_id("Workspace", w.workspace.id),
        "missing_ws": to_global_id("Workspace", 10**12),
        "project": to_global_id("Project", w.project.id),
        "task": to_global_id("Task", w.tasks[0].id),
        "missing_task": to_global_id("Task", 10**12),
        "missing_key": to_global_id("ApiKey", 10**12),
    }
    before = (await session.execute(text("SELECT count(*) FROM activities"))).scalar()
    for field, input_type, variables in ANONYMOUS_MUTATIONS:
        document = (
            f"mutation($input: {input_type}!) {{ {field}(input: $input) "
            "{ userErrors { code } } }"
        )
        body = await api(document, {"input": variables(ids)})
        assert body["data"] is None, (field, body)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", (field, body)
        assert error["path"] == [field]
    # Nothing was written, and the mutations anyone may run still work anonymously.
    assert (await session.execute(text("SELECT count(*) FROM activities"))).scalar() == before
    assert (await sign_up(api, "anon@example.com"))["userErrors"] == []
    # A signed-in user without the right is still FORBIDDEN, not asked to sign in.
    viewer = (
        await api.data(
            "mutation($input: CreateTaskInput!) { createTask(input: $input) "
            "{ userErrors { code } } }",
            {"input": {"projectId": ids["project"], "title": "T"}},
            token=token_for(w.users["viewer"].id),
        )
    )["createTask"]
    assert [e["code"] for e in viewer["userErrors"]] == ["FORBIDDEN"]
