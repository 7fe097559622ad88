"""Live events across processes and through faults: two server processes on one database, the
listening connection ended by PostgreSQL, clients that vanish, connect/disconnect cycles that
must leave nothing behind, and the limits of a WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from websockets.exceptions import ConnectionClosed

from db import activities
from db.engine import make_engine
from db.models import ActivityKind
from db.principals import Principal
from graph import pubsub
from graph.settings import Settings
from tests.graph.live_app import (
    EVENTS,
    LEGACY_WS,
    TRANSPORT_WS,
    LiveApp,
    Seeded,
    bearer,
    served,
    socket_to,
)
from tests.graph.live_server import serving


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def admin(committed_db: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test server's maintenance database."""
    maintenance = make_url(committed_db).set(database="postgres")
    connection = await asyncpg.connect(_plain(maintenance.render_as_string(hide_password=False)))
    yield connection
    await connection.close()


async def _record(engine: AsyncEngine, seeded: Seeded, title: str) -> None:
    """A task change committed by another connection than the server's."""
    world = seeded.world
    async with AsyncSession(engine) as session:
        await activities.record_for(
            session,
            Principal(user_id=world.users["owner"].id),
            world.tasks[0],
            "ENG-1",
            ActivityKind.TASK_UPDATED,
            [activities.change("title", None, title)],
        )
        await session.commit()


async def test_two_server_processes_share_events_through_the_database(
    committed_db: str, seeded: Seeded, tmp_path: Path
) -> None:
    """Subscribed on one `taskgraph serve`, mutated through another: the event arrives."""
    async with (
        serving(committed_db, tmp_path / "a") as one,
        serving(committed_db, tmp_path / "b") as other,
        socket_to(one.url.replace("http://", "ws://")) as ws,
    ):
        assert (await ws.init(bearer(seeded.tokens["viewer"])))["type"] == "connection_ack"
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        # Joined once its process listens (the first subscriber starts the listener).
        await _wait_for_listener(committed_db)
        async with httpx.AsyncClient(timeout=10) as client:
            body = (
                await client.post(
                    other.url,
                    json={
                        "query": CREATE_IN_OTHER,
                        "variables": {"p": seeded.project},
                    },
                    headers=bearer(seeded.tokens["member"]),
                )
            ).json()
        created = body["data"]["createTask"]["task"]["id"]
        event = (await ws.next_message(within=10))["payload"]["data"]["taskEvents"]
        assert (event["kind"], event["taskId"]) == ("CREATED", created)
        assert event["task"]["title"] == "From the other process"


CREATE_IN_OTHER = """mutation($p: ID!) {
  createTask(input: {projectId: $p, title: "From the other process"}) { task { id } }
}"""


async def _wait_for_listener(database_url: str, count: int = 1) -> None:
    connection = await asyncpg.connect(_plain(database_url))
    try:
        for _ in range(500):
            found = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'taskgraph-listener' AND query LIKE 'LISTEN%'"
            )
            if found >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("no live-event listener connected")
    finally:
        await connection.close()


async def _listener_down(
    live: LiveApp, engine: AsyncEngine, admin: asyncpg.Connection, while_down: Any
) -> None:
    """End the hub's listening connection while the database takes no new connection, run
    `while_down` (commits on connections opened before), then let connections in again."""
    hub = live.hub
    assert hub is not None
    listener = hub.listener
    database = engine.url.database
    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.backend_pid)
        for _ in range(500):
            if listener.refused > 0:
                break
            await asyncio.sleep(0.01)
        assert listener.refused > 0, "the listener did not try again"
        await while_down()
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@pytest.fixture
async def writer(live_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """Another engine on the database, its connection open before any test refuses new ones."""
    engine = make_engine(live_engine.url.render_as_string(hide_password=False))
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    yield engine
    await engine.dispose()


async def test_an_ended_listener_reconnects_and_sends_what_committed_meanwhile(
    live: LiveApp,
    seeded: Seeded,
    writer: AsyncEngine,
    live_engine: AsyncEngine,
    admin: asyncpg.Connection,
) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["viewer"]))
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(1)
        hub = live.hub
        assert hub is not None
        pid = hub.listener.backend_pid

        async def commit() -> None:
            await _record(writer, seeded, "while down")

        await _listener_down(live, live_engine, admin, commit)
        missed = (await ws.next_message(within=15))["payload"]["data"]["taskEvents"]
        assert (missed["kind"], missed["changedFields"]) == ("UPDATED", ["title"])
        assert hub.listener.reconnects == 1 and hub.listener.backend_pid != pid
        # The subscription goes on without reconnecting, and nothing comes twice.
        await _record(writer, seeded, "after")
        assert (await ws.next_message())["payload"]["data"]["taskEvents"]["kind"] == "UPDATED"
        with pytest.raises(TimeoutError):
            await ws.next_message(within=0.3)


async def test_too_much_missed_is_said_with_events_missed(
    live: LiveApp,
    seeded: Seeded,
    writer: AsyncEngine,
    live_engine: AsyncEngine,
    admin: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pubsub, "MAX_CATCH_UP", 2)
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["viewer"]))
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(1)

        async def commit() -> None:
            for n in range(3):
                await _record(writer, seeded, f"missed {n}")

        await _listener_down(live, live_engine, admin, commit)
        told = await ws.next_message(within=15)
        assert told["type"] == "next" and told["payload"]["data"] is None, told
        assert [e["extensions"]["code"] for e in told["payload"]["errors"]] == ["EVENTS_MISSED"]
        # Still subscribed: the next change arrives.
        await _record(writer, seeded, "after")
        assert (await ws.next_message())["payload"]["data"]["taskEvents"]["kind"] == "UPDATED"


def _frame(text_: str) -> bytes:
    """A masked text frame, as a client sends it (RFC 6455, 5.2)."""
    payload = text_.encode()
    mask = b"\x01\x02\x03\x04"
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_client_that_vanishes_without_a_close_frame_is_cleaned_up(
    settings: Settings, live_engine: AsyncEngine, seeded: Seeded
) -> None:
    """A client that stops answering (its machine gone): the server's pings go unanswered,
    the connection is ended and its subscription leaves the hub."""
    quick = settings.model_copy(update={"ws_ping_interval": 0.2})
    async with served(quick, live_engine) as live:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(
            (
                f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {TRANSPORT_WS}\r\n\r\n"
            ).encode()
        )
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        init = {"type": "connection_init", "payload": bearer(seeded.tokens["viewer"])}
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": EVENTS, "variables": {"workspace": seeded.workspace}},
        }
        writer.write(_frame(json.dumps(init)) + _frame(json.dumps(subscribe)))
        await writer.drain()
        await live.until_subscribed(1)
        # From now on the client reads nothing and answers no ping.
        await live.until_subscribed(0)
        hub = live.hub
        assert hub is not None and not hub.groups and not hub.per_principal
        writer.close()


async def test_connect_subscribe_disconnect_cycles_leave_nothing_behind(
    live: LiveApp, seeded: Seeded, live_engine: AsyncEngine
) -> None:
    """2,000 cycles (20 clients at a time): afterwards as many subscriptions, groups, tasks and
    database connections as after a first round of the same, counted."""

    async def cycles(n: int, credentials: str, protocol: str) -> None:
        for i in range(n):
            async with socket_to(live.ws, protocol) as ws:
                await ws.init(bearer(credentials))
                await ws.subscribe(str(i), EVENTS, {"workspace": seeded.workspace})
                if i % 10 == 0:
                    # Some stop their subscription first; the rest just go.
                    await _until_some(live)
                    await ws.stop(str(i))

    async def round_of(per_client: int) -> dict[str, int]:
        await asyncio.gather(
            *(
                cycles(
                    per_client,
                    seeded.tokens["viewer"] if c % 2 else seeded.read_key,
                    (TRANSPORT_WS, LEGACY_WS)[c % 2],
                )
                for c in range(20)
            )
        )
        await live.until_subscribed(0)
        return await _counts(live, live_engine)

    # The first round starts the hub and fills the pool as far as 20 clients take it.
    before = await round_of(5)
    assert before["subscriptions"] == before["groups"] == before["principals"] == 0
    after = await round_of(100)
    assert after == before


async def _until_some(live: LiveApp) -> None:
    for _ in range(500):
        if live.hub is not None and live.hub.subscribers:
            return
        await asyncio.sleep(0.005)


async def _counts(live: LiveApp, engine: AsyncEngine) -> dict[str, int]:
    hub = live.hub
    assert hub is not None
    async with engine.connect() as connection:
        backends = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'taskgraph%'"
            )
        )
    return {
        "subscriptions": hub.subscribers,
        "groups": len(hub.groups),
        "principals": len(hub.per_principal),
        "asyncio tasks": len(asyncio.all_tasks()),
        # The hub's listener and the pool's connections (this one's is one of them).
        "database connections": int(backends),
    }


async def test_limits_of_a_websocket(
    settings: Settings, live_engine: AsyncEngine, seeded: Seeded
) -> None:
    limited = settings.model_copy(
        update={
            "ws_init_timeout": 0.3,
            "max_subscriptions_per_connection": 2,
            "max_subscriptions_per_principal": 3,
            "ws_max_message_bytes": 4096,
        }
    )
    async with served(limited, live_engine) as live:
        # No connection_init in time: 4408, in both protocols.
        for protocol in (TRANSPORT_WS, LEGACY_WS):
            async with socket_to(live.ws, protocol) as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.receive(within=5)
                assert ws.connection.close_code == 4408, protocol
        async with socket_to(live.ws) as one, socket_to(live.ws) as two:
            for ws in (one, two):
                await ws.init(bearer(seeded.tokens["viewer"]))
            variables = {"workspace": seeded.workspace}
            await one.subscribe("a", EVENTS, variables)
            await one.subscribe("b", EVENTS, variables)
            await one.subscribe("c", EVENTS, variables)
            refused = await one.next_message()
            assert (refused["id"], refused["type"]) == ("c", "error")
            error = refused["payload"][0]
            assert error["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": 2}
            await two.subscribe("d", EVENTS, variables)
            await live.until_subscribed(3)
            await two.subscribe("e", EVENTS, variables)
            refused = await two.next_message()
            assert refused["payload"][0]["extensions"] == {
                "code": "TOO_MANY_SUBSCRIPTIONS",
                "limit": 3,
            }
            # A message over the size cap ends the connection (1009, "message too big").
            await two.send({"type": "ping", "payload": {"pad": "x" * 5000}})
            with pytest.raises(ConnectionClosed):
                await two.receive()
            assert two.connection.close_code == 1009
            # The other connection is untouched.
            await one.send({"type": "ping"})
            assert (await one.receive())["type"] == "pong"
