"""logIn and signUp attempts limited per e-mail and per client address, through the API."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from graph.settings import Settings
from tests import factories
from tests.graph.conftest import SECRET, Api

LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) {
  accessToken userErrors { code } } }"""
SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  accessToken userErrors { code } } }"""


@pytest.fixture
def settings() -> Settings:
    return Settings(
        database_url="postgresql+asyncpg://unused/test",
        secret_key=SECRET,
        login_attempts_per_email=3,
        login_attempts_per_address=5,
    )


async def _log_in(api: Api, email: str, password: str) -> dict[str, Any]:
    return await api(LOG_IN, {"input": {"email": email, "password": password}})


def _refused(body: dict[str, Any]) -> int:
    """The wait of a RATE_LIMITED answer (fails on any other answer)."""
    assert body["data"] is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED", error
    retry = error["extensions"]["retryAfter"]
    assert error["message"] == f"Too many attempts; try again in {retry} seconds."
    return retry  # type: ignore[no-any-return]


async def test_failed_log_ins_per_e_mail_are_limited(api: Api, session: AsyncSession) -> None:
    await factories.user(session, "bob", email="bob@example.com")
    await session.commit()
    for _ in range(3):
        body = await _log_in(api, "bob@example.com", "wrong password")
        assert body["data"]["logIn"]["userErrors"] == [{"code": "INVALID"}]
    # The right password too: the limit holds before the password is looked at.
    retry = _refused(await _log_in(api, "BOB@example.com ", factories.PASSWORD))
    # Three attempts per 900 s come back one every 300 s.
    assert 290 <= retry <= 300
    # Another e-mail has a limit of its own (within the address's).
    body = await _log_in(api, "other@example.com", "wrong password")
    assert body["data"]["logIn"]["userErrors"] == [{"code": "INVALID"}]


async def test_successful_log_ins_cost_nothing(api: Api, session: AsyncSession) -> None:
    await factories.user(session, "bob", email="bob@example.com")
    await session.commit()
    for _ in range(6):
        body = await _log_in(api, "bob@example.com", factories.PASSWORD)
        assert body["data"]["logIn"]["accessToken"], body


async def test_attempts_per_address_are_limited(api: Api) -> None:
    # Malformed addresses fail without hashing: cheap attempts, each one counted.
    for i in range(5):
        body = await _log_in(api, f"guess{i}", "x")
        assert body["data"]["logIn"]["userErrors"] == [{"code": "INVALID"}]
    _refused(await _log_in(api, "guess5", "x"))
    # Sign-up shares the address's attempts.
    _refused(await _sign_up(api, "new@example.com"))


async def _sign_up(api: Api, email: str) -> dict[str, Any]:
    return await api(SIGN_UP, {"input": {"email": email, "name": "N", "password": "x" * 9}})


async def test_sign_ups_count_per_e_mail_and_per_address(api: Api) -> None:
    for email in ("n0@example.com", "n1@example.com"):
        assert (await _sign_up(api, email))["data"]["signUp"]["accessToken"]
    for _ in range(2):
        body = await _sign_up(api, "n0@example.com")
        assert body["data"]["signUp"]["userErrors"] == [{"code": "TAKEN"}]
    # The e-mail's three attempts are spent; the refusal costs the address nothing.
    _refused(await _sign_up(api, "n0@example.com"))
    assert (await _sign_up(api, "n2@example.com"))["data"]["signUp"]["accessToken"]
    # The address's five are spent: successful sign-ups keep their points.
    _refused(await _sign_up(api, "n3@example.com"))
