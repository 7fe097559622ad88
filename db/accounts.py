"""Users, passwords and refresh tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    any_,
    case,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from db import passwords, validation
from db.descriptions import NodeType, Value, global_id, timestamp, value
from db.models import Membership, RefreshToken, User
from db.principals import PrincipalSQL
from db.problems import Problem, ProblemCode, Rejected, reject

U = User.__table__
M = Membership.__table__
RT = RefreshToken.__table__

EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD = 8
# Argon2 is slow by design: an unbounded password would let one request burn CPU.
MAX_PASSWORD = 256
REFRESH_PREFIX = "tgr_"


def hash_password(password: str) -> str:
    """On the calling thread: for tools and data generators, not for requests."""
    return passwords.hash_now(password)


def normalise_email(email: str) -> str:
    return email.strip()


def check_email(email: str, *field: str) -> list[Problem]:
    if (
        len(email) > 320
        or not EMAIL_PATTERN.fullmatch(email)
        or validation.storable(email, field, "")
    ):
        return [Problem("Enter a valid e-mail address.", ProblemCode.INVALID, field or None)]
    return []


def check_name(name: str, *field: str) -> list[Problem]:
    return validation.length(name, field, minimum=1, maximum=100, label="Name")


async def sign_up(session: AsyncSession, email: str, name: str, password: str) -> Any:
    """Hashes the password: run it within a `passwords.turn()`."""
    email = normalise_email(email)
    problems = check_email(email, "input", "email") + check_name(name, "input", "name")
    if len(password) < MIN_PASSWORD:
        problems.append(
            Problem(
                f"Password must be at least {MIN_PASSWORD} characters.", field=("input", "password")
            )
        )
    elif len(password) > MAX_PASSWORD:
        problems.append(
            Problem(
                f"Password must be at most {MAX_PASSWORD} characters.", field=("input", "password")
            )
        )
    problems += validation.storable(password, ("input", "password"), "Password")
    if problems:
        raise Rejected(problems)
    taken = select(U.c.id).where(func.lower(U.c.email) == email.lower())
    if (await session.execute(taken)).first() is not None:
        raise reject(
            "An account with this e-mail already exists.", ProblemCode.TAKEN, "input", "email"
        )
    password_hash = await passwords.hash_password(password)
    stmt = (
        insert(U).values(email=email, name=name.strip(), password_hash=password_hash).returning(U)
    )
    # The unique index settles a concurrent sign-up with the same address.
    async with session.begin_nested():
        from sqlalchemy.exc import IntegrityError

        try:
            return (await session.execute(stmt)).one()
        except IntegrityError:
            raise reject(
                "An account with this e-mail already exists.", ProblemCode.TAKEN, "input", "email"
            ) from None


async def log_in(session: AsyncSession, email: str, password: str) -> Any:
    """Verifies the password: run it within a `passwords.turn()`."""
    wrong = reject("Incorrect e-mail or password.", ProblemCode.INVALID)
    # A malformed address or password cannot belong to an account (and would fail in the
    # driver or the hasher): refused before any lookup.
    if (
        len(password) > MAX_PASSWORD
        or validation.storable(password, (), "")
        or check_email(normalise_email(email))
    ):
        raise wrong
    row = (
        await session.execute(
            select(U).where(func.lower(U.c.email) == normalise_email(email).lower())
        )
    ).first()
    matches, outdated = await passwords.verify_password(
        row.password_hash if row else passwords.DUMMY_HASH, password
    )
    if row is None or not matches:
        raise wrong
    if outdated:
        rehashed = await passwords.hash_password(password)
        await session.execute(update(U).where(U.c.id == row.id).values(password_hash=rehashed))
    return row


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    token: str
    user_id: int
    expires_at: datetime


async def issue_refresh_token(
    session: AsyncSession, user_id: int, lifetime: timedelta, family_id: int | None = None
) -> IssuedRefreshToken:
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + lifetime
    await session.execute(
        insert(RT).values(
            user_id=user_id,
            token_hash=_token_hash(token),
            family_id=family_id if family_id is not None else secrets.randbits(62),
            expires_at=expires_at,
        )
    )
    return IssuedRefreshToken(token, user_id, expires_at)


async def rotate_refresh_token(
    session: AsyncSession, token: str, lifetime: timedelta
) -> IssuedRefreshToken:
    """Exchange a refresh token for a new one.

    Presenting a token that was already rotated means it was copied: every token of its
    family is revoked, so the thief and the owner both have to log in again.
    """
    invalid = reject(
        "The refresh token is invalid or expired.", ProblemCode.INVALID, "input", "refreshToken"
    )
    # The row lock makes two concurrent uses of one token take turns: the second sees it revoked.
    row = (
        await session.execute(
            select(RT).where(RT.c.token_hash == _token_hash(token)).with_for_update()
        )
    ).first()
    if row is None:
        raise invalid
    now = datetime.now(UTC)
    if row.revoked_at is not None:
        await session.execute(
            update(RT)
            .where(RT.c.family_id == row.family_id, RT.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        # The revocation must stick although the request is refused.
        await session.commit()
        raise invalid
    if row.expires_at <= now:
        raise invalid
    await session.execute(update(RT).where(RT.c.id == row.id).values(revoked_at=now))
    return await issue_refresh_token(session, row.user_id, lifetime, row.family_id)


async def revoke_refresh_token(session: AsyncSession, token: str) -> None:
    """Log out: revoke the token's whole family (the session on that device)."""
    row = (
        await session.execute(select(RT.c.family_id).where(RT.c.token_hash == _token_hash(token)))
    ).first()
    if row is None:
        raise reject("Unknown refresh token.", ProblemCode.INVALID, "input", "refreshToken")
    await session.execute(
        update(RT)
        .where(RT.c.family_id == row.family_id, RT.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def user_by_id(session: AsyncSession, user_id: int) -> Any | None:
    return (await session.execute(select(U).where(U.c.id == user_id))).first()


# ---------------------------------------------------------------- read description


def self_or_member(user_id: Any, me: Any, workspace_ids: Any) -> Any:
    """The user is the principal, or a member of one of `workspace_ids`."""
    member = exists().where(M.c.user_id == user_id, M.c.workspace_id == any_(workspace_ids))
    return (user_id == me) | member


def _email(c: Any, p: PrincipalSQL) -> Any:
    # Shown to the user and to members of a workspace the user belongs to; an API key is no
    # member, so it never sees e-mails.
    return case((self_or_member(c.id, p.me, p.member_of), c.email))


USER = NodeType(
    "User",
    lambda: select(U.c.id, U.c.name, U.c.email, U.c.created_at),
    {
        "id": global_id("User"),
        "name": value("name"),
        "email": Value(_email, loaded=True),
        "created_at": timestamp("created_at"),
    },
    # Looked up by id: self, or a member of a workspace the principal can read. Reached as an
    # author, assignee or actor: always.
    visible=lambda c, p: self_or_member(c.id, p.me, p.readable),
    lookup_only=True,
)
