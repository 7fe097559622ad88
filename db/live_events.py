"""Live events in the database: the notices a change sends after it commits, the connection
that listens for them, and the read of what was missed while it could not listen.

A task change writes its activity row and, in the same statement, a `NOTIFY` on `CHANNEL`
(`db.activities.record`); a change of who may read a workspace (a member removed or given
another role, an API key revoked) sends one too (`access_notice_sql`). PostgreSQL delivers a
notice only when its transaction commits, so a rolled-back write never produces an event, and
delivers the notices of different transactions in the order they committed: a member's
removal reaches a listener before any task change committed after it.

Notices carry identifiers only (a notice is seen by every listening connection, whatever it
may read): what the subscriber sees is read through the read path with its permissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy import BigInteger, Text, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL, make_url

from db import prepared
from db.models import Activity, ApiKey, Membership, Role

CHANNEL = "taskgraph_events"

A = Activity.__table__
K = ApiKey.__table__
M = Membership.__table__


@dataclass(frozen=True, slots=True)
class TaskChanged:
    """A task's activity row was committed (its id names the event)."""

    activity_id: int
    workspace_id: int
    project_id: int
    task_id: int


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """Who may read a workspace changed: a member's role (or membership), or an API key."""

    workspace_id: int
    user_id: int | None = None
    api_key_id: int | None = None


Notice = TaskChanged | AccessChanged


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The listening connection was lost at `down_since` and listens again: what committed
    meanwhile was not heard (`missed`)."""

    down_since: datetime


def task_notice_sql(inserted: Any) -> Any:
    """The notice of an activity row, over the columns of its `INSERT ... RETURNING`."""
    payload = func.json_build_object(
        "a",
        inserted.id,
        "w",
        inserted.workspace_id,
        "p",
        inserted.project_id,
        "t",
        inserted.task_id,
    )
    return func.pg_notify(CHANNEL, cast(payload, Text))


def access_notice_sql(workspace_id: Any, *, user_id: Any = None, api_key_id: Any = None) -> Any:
    """The notice of an access change, over the columns of the statement that makes it (its
    `... RETURNING`), so that the change and its notice are one statement."""
    fields: list[Any] = ["w", workspace_id]
    if user_id is not None:
        fields += ["u", user_id]
    if api_key_id is not None:
        fields += ["k", api_key_id]
    return func.pg_notify(CHANNEL, cast(func.json_build_object(*fields), Text)).label("notified")


def parse(payload: str) -> Notice | None:
    """A notice from its payload; None for one this version does not know."""
    try:
        fields = orjson.loads(payload)
        if "a" in fields:
            return TaskChanged(
                int(fields["a"]), int(fields["w"]), int(fields["p"]), int(fields["t"])
            )
        return AccessChanged(int(fields["w"]), fields.get("u"), fields.get("k"))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------- what was missed


def _missed() -> Any:
    return (
        select(A.c.id, A.c.workspace_id, A.c.project_id, A.c.task_id)
        .where(
            A.c.workspace_id == any_(bindparam("workspaces", type_=ARRAY(BigInteger))),
            A.c.created_at >= bindparam("since"),
        )
        .order_by(A.c.id)
        .limit(bindparam("limit", type_=BigInteger))
    )


async def missed(
    pooled: prepared.Pooled, workspaces: Sequence[int], since: datetime, limit: int
) -> list[TaskChanged]:
    """Task changes of `workspaces` whose transaction began at `since` or later (an activity's
    `created_at` is its transaction's start), at most `limit`, oldest first."""
    compiled = prepared.shape("live_events.missed", _missed)
    rows = await pooled.rows(compiled, workspaces=list(workspaces), since=since, limit=limit)
    return [TaskChanged(r.id, r.workspace_id, r.project_id, r.task_id) for r in rows]


# ---------------------------------------------------------------- who may still read


def _roles() -> Any:
    pairs = select(
        func.unnest(bindparam("workspaces", type_=ARRAY(BigInteger))).label("workspace_id"),
        func.unnest(bindparam("users", type_=ARRAY(BigInteger))).label("user_id"),
    ).subquery()
    return select(M.c.workspace_id, M.c.user_id, M.c.role).join(
        pairs, (M.c.workspace_id == pairs.c.workspace_id) & (M.c.user_id == pairs.c.user_id)
    )


async def roles(
    pooled: prepared.Pooled, pairs: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], Role]:
    """The role of each (workspace, user) that is still a membership."""
    compiled = prepared.shape("live_events.roles", _roles)
    rows = await pooled.rows(
        compiled, workspaces=[w for w, _ in pairs], users=[u for _, u in pairs]
    )
    return {(r.workspace_id, r.user_id): Role(r.role) for r in rows}


def _live_keys() -> Any:
    return select(K.c.id).where(
        K.c.id == any_(bindparam("keys", type_=ARRAY(BigInteger))), K.c.revoked_at.is_(None)
    )


async def live_keys(pooled: prepared.Pooled, keys: Sequence[int]) -> set[int]:
    """Those of the API keys that are not revoked."""
    compiled = prepared.shape("live_events.live_keys", _live_keys)
    return {r.id for r in await pooled.rows(compiled, keys=list(keys))}


# ---------------------------------------------------------------- the listening connection


def listener_dsn(url: str | URL) -> str:
    """A plain libpq URL for asyncpg from the engine's SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.1
    longest: float = 5.0

    def delays(self) -> Any:
        delay = self.first
        while True:
            # Jitter, so that every worker of a restarted database does not retry in step.
            yield delay * (0.5 + random.random() / 2)  # noqa: S311 (not a secret)
            delay = min(delay * 2, self.longest)


log = logging.getLogger(__name__)


class Listener:
    """One connection that LISTENs on `CHANNEL`, kept open: when PostgreSQL ends it (a
    restart, `pg_terminate_backend`, a network fault), it is opened again with back-off.

    `on_notice` gets every notice, in commit order, and after a reconnect a `Reconnected`
    before the new connection's first notice, so that the caller can read what committed
    while nothing listened (`missed`).
    """

    def __init__(
        self,
        dsn: str,
        on_notice: Callable[[Notice | Reconnected], None],
        backoff: Backoff = Backoff(),
    ) -> None:
        self.dsn = dsn
        self.on_notice = on_notice
        self.backoff = backoff
        self.connection: asyncpg.Connection | None = None
        self.reconnects = 0
        # Connections tried and refused since it last listened.
        self.refused = 0
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # While catching up after a reconnect, notices wait here (commit order is kept).
        self._held: list[Notice] | None = None

    async def start(self) -> None:
        """Listen; returns once the first connection listens (raises if it cannot connect)."""
        self.connection = await self._connect()
        self._task = asyncio.create_task(self._keep(), name="live-events-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:
                await asyncio.wait_for(connection.close(), 2)
            except Exception:
                connection.terminate()

    @property
    def backend_pid(self) -> int | None:
        connection = self.connection
        return connection.get_server_pid() if connection is not None else None

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self.dsn, server_settings={"application_name": "taskgraph-listener"}
        )
        self._lost = asyncio.Event()
        lost = self._lost
        connection.add_termination_listener(lambda _: lost.set())
        await connection.add_listener(CHANNEL, self._received)
        return connection

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        notice = parse(payload)
        if notice is None:
            log.warning("a live-event notice of an unknown form was ignored: %.200s", payload)
            return
        if self._held is not None:
            self._held.append(notice)
        else:
            self.on_notice(notice)

    async def _keep(self) -> None:
        while True:
            await self._lost.wait()
            down_since = datetime.now(UTC)
            old, self.connection = self.connection, None
            if old is not None:
                old.terminate()
            log.warning("the live-event connection ended; listening again")
            for delay in self.backoff.delays():
                try:
                    # Notices that arrive while the missed ones are read wait their turn.
                    self._held = []
                    self.connection = await self._connect()
                    self.refused = 0
                    break
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    self._held = None
                    self.refused += 1
                    log.warning("live events: cannot listen yet (%s); again in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
            self.reconnects += 1
            self.on_notice(Reconnected(down_since))
            held, self._held = self._held or [], None
            for notice in held:
                self.on_notice(notice)
            log.info("live events: listening again after %d reconnects", self.reconnects)


# The notices of transactions that began this long before the connection was lost are still
# looked for after a reconnect (a transaction's activities carry its start time).
CATCH_UP_MARGIN = timedelta(seconds=30)
