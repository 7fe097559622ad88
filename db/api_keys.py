"""API keys: partner credentials bound to one workspace.

A key reads `tgk_<prefix>_<secret>`. The prefix is stored in clear so that the key can be
found and shown for recognition; only a SHA-256 of the whole key is stored. Keys are long
random strings, so a fast hash is enough (unlike passwords, they cannot be guessed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import any_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import live_events, prepared
from db.descriptions import NodeType, One, Value, global_id, timestamp, value
from db.errors import Unauthenticated
from db.models import ApiKey, ApiScope
from db.principals import Principal
from db.problems import ProblemCode, reject

K = ApiKey.__table__

KEY_PREFIX = "tgk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    row: Any
    secret: str


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(secret: str) -> str | None:
    parts = secret.split("_")
    if len(parts) != 3 or parts[0] + "_" != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return f"{KEY_PREFIX}{parts[1]}"


async def create_api_key(
    session: AsyncSession,
    principal: Principal,
    workspace_id: int,
    name: str,
    scopes: Sequence[ApiScope],
) -> CreatedKey:
    if not principal.can_read(workspace_id):
        raise reject("Workspace not found.", ProblemCode.NOT_FOUND, "input", "workspaceId")
    if not principal.can_manage(workspace_id) or principal.user_id is None:
        raise reject(
            "Only workspace admins can create API keys.",
            ProblemCode.FORBIDDEN,
            "input",
            "workspaceId",
        )
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise reject("Name must be 1 to 100 characters.", ProblemCode.INVALID, "input", "name")
    if not scopes:
        raise reject("Give at least one scope.", ProblemCode.INVALID, "input", "scopes")
    # WRITE without READ would be a key that can change what it cannot see.
    stored = sorted({ApiScope(s).value for s in scopes} | {ApiScope.READ.value})
    prefix = KEY_PREFIX + secrets.token_hex(6)
    secret = f"{prefix}_{secrets.token_urlsafe(32).replace('_', 'x')}"
    row = (
        await session.execute(
            insert(K)
            .values(
                workspace_id=workspace_id,
                name=name,
                prefix=prefix,
                secret_hash=_hash(secret),
                scopes=stored,
                created_by_id=principal.user_id,
            )
            .returning(K)
        )
    ).one()
    return CreatedKey(row, secret)


async def revoke_api_key(session: AsyncSession, principal: Principal, key_id: int) -> Any:
    row = (await session.execute(select(K).where(K.c.id == key_id).with_for_update())).first()
    if row is None or not principal.can_read(row.workspace_id):
        raise reject("API key not found.", ProblemCode.NOT_FOUND, "input", "id")
    if not principal.can_manage(row.workspace_id):
        raise reject(
            "Only workspace admins can revoke API keys.", ProblemCode.FORBIDDEN, "input", "id"
        )
    if row.revoked_at is not None:
        return row
    revoked = (
        update(K).where(K.c.id == key_id).values(revoked_at=datetime.now(UTC)).returning(K).cte()
    )
    notice = live_events.access_notice_sql(revoked.c.workspace_id, api_key_id=revoked.c.id)
    return (await session.execute(select(revoked, notice))).one()


def _by_prefix() -> Any:
    return select(K).where(K.c.prefix == bindparam("prefix"))


def _touch() -> Any:
    return (
        update(K)
        .where(
            K.c.id == bindparam("key_id"),
            or_(K.c.last_used_at.is_(None), K.c.last_used_at < bindparam("cutoff")),
        )
        .values(last_used_at=bindparam("used_at"))
    )


def _checked(found: Sequence[Any], secret: str) -> Any:
    row = found[0] if found else None
    if (
        row is None
        or not hmac.compare_digest(row.secret_hash, _hash(secret))
        or row.revoked_at is not None
    ):
        raise Unauthenticated("Invalid or revoked API key.")
    return row


def _principal(row: Any) -> Principal:
    return Principal(
        api_key_id=row.id,
        api_key_workspace_id=row.workspace_id,
        api_key_creator_id=row.created_by_id,
        scopes=frozenset(ApiScope(s) for s in row.scopes),
    )


def _prefix(secret: str) -> str:
    prefix = _split(secret)
    if prefix is None:
        raise Unauthenticated("Malformed API key.")
    return prefix


def _stale(row: Any, now: datetime) -> bool:
    return row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION


async def authenticate(session: AsyncSession, secret: str) -> Principal:
    """The principal of an API key, or Unauthenticated.

    Records `last_used_at` at most once a minute (committed at once, before the operation
    runs), so that a busy integration does not write on every request.
    """
    found = await prepared.rows(session, "api_key_by_prefix", _by_prefix, prefix=_prefix(secret))
    row = _checked(found, secret)
    now = datetime.now(UTC)
    if _stale(row, now):
        await session.execute(
            _touch(), {"key_id": row.id, "cutoff": now - LAST_USED_RESOLUTION, "used_at": now}
        )
        await session.commit()
    return _principal(row)


async def authenticate_pooled(pooled: prepared.Pooled, secret: str) -> Principal:
    """`authenticate` on a pooled connection without a session (a compiled query by an API
    key needs none): the same statements, the `last_used_at` write committing by itself."""
    found = await pooled.rows(
        prepared.shape("api_key_by_prefix", _by_prefix), prefix=_prefix(secret)
    )
    row = _checked(found, secret)
    now = datetime.now(UTC)
    if _stale(row, now):
        await pooled.rows(
            prepared.shape("api_key_touch", _touch),
            key_id=row.id,
            cutoff=now - LAST_USED_RESOLUTION,
            used_at=now,
        )
    return _principal(row)


# ---------------------------------------------------------------- read description

API_KEY = NodeType(
    "ApiKey",
    lambda: select(K),
    {
        "id": global_id("ApiKey"),
        "name": value("name"),
        "prefix": value("prefix"),
        "scopes": Value(lambda c, p: c.scopes, func.to_json),
        "created_at": timestamp("created_at"),
        "last_used_at": timestamp("last_used_at"),
        "revoked_at": timestamp("revoked_at"),
        "created_by": One("User", lambda u, parent, p, args, param: [u.id == parent.created_by_id]),
    },
    # Workspace admins only: others must not learn about keys.
    visible=lambda c, p: c.workspace_id == any_(p.manageable),
)
