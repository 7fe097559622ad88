"""Authorisation and token rules that a request could get past, each shown through the API.

Every test here fails when the rule it names is taken out of the code (each was tried).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.api_keys import create_api_key
from db.models import ApiScope, Comment
from db.principals import user_principal
from graph.auth import ALGORITHM, ISSUER, issue_access_token
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import SECRET, Api, token_for

ME = "{ me { id } }"
# Answered by the resolvers (mutations never take the compiled path).
CREATE_WORKSPACE = """mutation($input: CreateWorkspaceInput!) { createWorkspace(input: $input) {
  workspace { slug } userErrors { code } } }"""


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# ---------------------------------------------------------------- comments of others

DELETE_COMMENT = """mutation($input: DeleteCommentInput!) { deleteComment(input: $input) {
  deletedCommentId userErrors { code field } } }"""
UPDATE_COMMENT = """mutation($input: UpdateCommentInput!) { updateComment(input: $input) {
  comment { body } userErrors { code field } } }"""


async def test_only_authors_and_admins_delete_a_comment(api: Api, session: AsyncSession) -> None:
    w = await factories.world(session)
    task_id = w.tasks[0].id
    by_admin = await factories.comment(session, task_id, w.users["admin"].id, "admin's")
    by_member = await factories.comment(session, task_id, w.users["member"].id, "member's")
    by_owner = await factories.comment(session, task_id, w.users["owner"].id, "owner's")
    owner = await user_principal(session, w.users["owner"].id)
    assert owner is not None
    write_key = (await create_api_key(session, owner, w.workspace.id, "w", [ApiScope.WRITE])).secret
    await session.commit()

    async def delete(comment: Any, token: str) -> dict[str, Any]:
        variables = {"input": {"id": to_global_id("Comment", comment.id)}}
        return (await api.data(DELETE_COMMENT, variables, token=token))["deleteComment"]  # type: ignore[no-any-return]

    async def exists(comment: Any) -> bool:
        found = await session.scalar(
            select(func.count()).select_from(Comment).where(Comment.id == comment.id)
        )
        return found == 1

    refused = {
        "deletedCommentId": None,
        "userErrors": [{"code": "FORBIDDEN", "field": ["input", "id"]}],
    }
    # A MEMBER may delete their own comments only; a WRITE key only its creator's.
    assert await delete(by_admin, token_for(w.users["member"].id)) == refused
    assert await delete(by_member, write_key) == refused
    assert await exists(by_admin) and await exists(by_member)
    # An ADMIN may delete any comment, but edit only their own.
    variables = {"input": {"id": to_global_id("Comment", by_member.id), "body": "Edited"}}
    edited = await api.data(UPDATE_COMMENT, variables, token=token_for(w.users["admin"].id))
    assert edited["updateComment"]["userErrors"] == [
        {"code": "FORBIDDEN", "field": ["input", "id"]}
    ]
    assert (await delete(by_member, token_for(w.users["admin"].id)))["userErrors"] == []
    # Control: the key deletes its creator's comment.
    assert (await delete(by_owner, write_key))["userErrors"] == []
    assert not await exists(by_member) and not await exists(by_owner)


# ---------------------------------------------------------------- refresh tokens

SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  refreshToken userErrors { code } } }"""
REFRESH = """mutation($input: RefreshSessionInput!) { refreshSession(input: $input) {
  accessToken refreshToken userErrors { code } } }"""
LOG_OUT = """mutation($input: LogOutInput!) { logOut(input: $input) { ok userErrors { code } } }"""


async def test_log_out_with_an_already_rotated_token_ends_the_whole_chain(api: Api) -> None:
    credentials = {"email": "chain@example.com", "name": "Chain", "password": "long enough pw"}
    first = (await api.data(SIGN_UP, {"input": credentials}))["signUp"]["refreshToken"]

    async def refresh(token: str) -> dict[str, Any]:
        return (await api.data(REFRESH, {"input": {"refreshToken": token}}))["refreshSession"]  # type: ignore[no-any-return]

    second = (await refresh(first))["refreshToken"]
    third = (await refresh(second))["refreshToken"]
    # Logging out with a token that was rotated long ago still ends the session it belongs to:
    # the newest token of the chain stops working.
    out = (await api.data(LOG_OUT, {"input": {"refreshToken": first}}))["logOut"]
    assert out == {"ok": True, "userErrors": []}
    assert (await refresh(third))["userErrors"] == [{"code": "INVALID"}]


# ---------------------------------------------------------------- access tokens

COMPILED_AND_RESOLVED = pytest.mark.parametrize(
    "path", ["compiled", "resolvers"], ids=["compiled path", "resolvers"]
)


async def _ask(api: Api, path: str, token: str) -> dict[str, Any]:
    if path == "compiled":
        return await api(ME, token=token)
    slug = factories.unique("tok-")
    return await api(CREATE_WORKSPACE, {"input": {"name": "T", "slug": slug}}, token=token)


def _answered(path: str, body: dict[str, Any], used: list[str]) -> bool:
    if "errors" in body:
        return False
    if path == "compiled":
        return body["data"]["me"] is not None and len(used) > 0
    return body["data"]["createWorkspace"]["userErrors"] == []


@COMPILED_AND_RESOLVED
async def test_a_remembered_access_token_is_refused_once_it_expires(
    api: Api, session: AsyncSession, used: list[str], path: str
) -> None:
    user = await factories.user(session)
    await session.commit()
    token, expires_at = issue_access_token(SECRET, user.id, timedelta(seconds=3))
    # Used while good: verified once and remembered (graph/auth.py `_verified`).
    assert _answered(path, await _ask(api, path, token), used)
    # The claim is in whole seconds: wait until it has surely passed.
    expiry = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    assert expiry <= expires_at.timestamp()
    await asyncio.sleep(max(0.0, expiry - time.time()) + 0.2)
    used.clear()
    body = await _ask(api, path, token)
    assert body.get("data") is None and codes(body) == ["UNAUTHENTICATED"], body
    assert used == []


def _signed(user_id: int, **changes: Any) -> str:
    """A token signed with the server's own key, with some claims changed (None: left out)."""
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": ISSUER,
        "typ": "access",
    } | changes
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, ALGORITHM)


@COMPILED_AND_RESOLVED
@pytest.mark.parametrize(
    "changes",
    [
        {"typ": "refresh"},
        {"typ": None},
        {"iss": "someone-else"},
        {"iss": None},
        {"sub": None},
        {"exp": None},
    ],
    ids=["typ-refresh", "no-typ", "foreign-iss", "no-iss", "no-sub", "no-exp"],
)
async def test_a_token_with_the_right_key_but_wrong_claims_is_refused(
    api: Api, session: AsyncSession, used: list[str], path: str, changes: dict[str, Any]
) -> None:
    user = await factories.user(session)
    await session.commit()
    # Control: the same token with the right claims is accepted on this path.
    assert _answered(path, await _ask(api, path, _signed(user.id)), used)
    used.clear()
    body = await _ask(api, path, _signed(user.id, **changes))
    assert body.get("data") is None and codes(body) == ["UNAUTHENTICATED"], body
    assert used == []
