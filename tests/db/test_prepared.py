"""Cached read statements run on asyncpg (`db.prepared`): compilation, parameters, rows, statement
counting, and how they behave with and without a transaction."""

from __future__ import annotations

import gc
import struct
import weakref

import asyncpg
import pytest
from sqlalchemy import BigInteger, Integer, any_, bindparam, event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import prepared
from db.engine import PoolSettings, make_engine, make_session_factory
from db.errors import connection_ended
from db.models import Task, User
from db.sql import any_str, ids_param
from tests import factories
from tests.backends import end_backends, end_backends_unnoticed, plain_url
from tests.conftest import StatementCounter, connections_in_use

T = Task.__table__
U = User.__table__


def test_per_call_parameters_are_named_and_literals_fixed_at_compile_time() -> None:
    shape = prepared.compile_shape(
        select(T.c.id)
        .where(
            T.c.project_id == bindparam("project", type_=BigInteger),
            any_str(T.c.status, ["TODO", "DONE"]),
            T.c.number > 3,
        )
        .limit(bindparam("limit", type_=Integer))
    )
    assert shape.sql.count("$") == 4
    assert shape.names == ("project", None, None, "limit")
    assert shape.fixed[1:3] == (["TODO", "DONE"], 3)


def test_an_expanding_in_is_refused() -> None:
    # Its SQL text would change with the number of values, defeating the cache.
    with pytest.raises(ValueError, match="post-compile"):
        prepared.compile_shape(select(T.c.id).where(T.c.id.in_([1, 2, 3])))


def test_a_shape_is_built_once_per_key_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prepared, "MAX_SHAPES", 3)
    monkeypatch.setattr(prepared, "_shapes", type(prepared._shapes)())
    built: list[int] = []

    def build(n: int) -> object:
        built.append(n)
        return select(T.c.id).where(T.c.number == n)

    first = prepared.shape(("t", 1), lambda: build(1))
    assert prepared.shape(("t", 1), lambda: build(1)) is first
    for n in (2, 3, 4):
        prepared.shape(("t", n), lambda n=n: build(n))
    assert built == [1, 2, 3, 4]
    assert len(prepared._shapes) == 3
    assert ("t", 1) not in prepared._shapes


async def test_rows_read_like_sqlalchemy_rows_and_are_counted(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    alice = await factories.user(session, name="Alice")
    bob = await factories.user(session, name="Bob")
    with StatementCounter(engine) as counter:
        rows = await prepared.rows(
            session,
            "test_users",
            lambda: select(U.c.id, U.c.name).where(U.c.id == any_(ids_param("ids"))),
            ids=[alice.id, bob.id, -1],
        )
    assert counter.count == 1
    assert "= ANY" in counter.statements[0]
    by_id = {row.id: row for row in rows}
    assert by_id[alice.id].name == "Alice"
    assert by_id[bob.id]["name"] == "Bob"
    assert tuple(by_id[bob.id]) == (bob.id, "Bob")
    with pytest.raises(AttributeError):
        _ = rows[0].missing


async def test_a_missing_parameter_is_a_programming_error(session: AsyncSession) -> None:
    with pytest.raises(KeyError):
        await prepared.rows(
            session,
            "test_missing",
            lambda: select(U.c.id).where(U.c.id == bindparam("id", type_=BigInteger)),
        )


async def test_reads_inside_a_write_see_its_uncommitted_rows(session: AsyncSession) -> None:
    # Once the session has written, raw reads run in its transaction.
    user = await factories.user(session, name="Uncommitted")
    rows = await prepared.rows(
        session,
        "test_user_name",
        lambda: select(U.c.name).where(U.c.id == bindparam("id", type_=BigInteger)),
        id=user.id,
    )
    assert [r.name for r in rows] == ["Uncommitted"]


async def test_a_read_only_session_sends_no_begin_and_holds_no_transaction(
    committed_db: str,
) -> None:
    engine = make_engine(committed_db)
    try:
        sessions = make_session_factory(engine)
        async with sessions() as session:
            await prepared.rows(session, "test_one", lambda: select(U.c.id).limit(1))
            await prepared.rows(session, "test_one", lambda: select(U.c.id).limit(1))
            # Another connection sees this one idle, not "idle in transaction".
            async with engine.connect() as other:
                states = (
                    await other.execute(
                        text(
                            "SELECT state FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                            "AND application_name = 'taskgraph'"
                        )
                    )
                ).scalars()
                assert list(states) == ["idle"]
            # The session still writes and commits normally afterwards.
            user = await factories.user(session, name="After reads")
            await session.commit()
        async with sessions() as session:
            rows = await prepared.rows(
                session,
                "test_user_name",
                lambda: select(U.c.name).where(U.c.id == bindparam("id", type_=BigInteger)),
                id=user.id,
            )
            assert [r.name for r in rows] == ["After reads"]
    finally:
        await engine.dispose()


def _fatal_error_message(sqlstate: str, message: str) -> bytes:
    """A PostgreSQL ErrorResponse of severity FATAL, as the wire carries it."""
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def test_a_connection_the_server_is_ending_is_thrown_away(engine: AsyncEngine) -> None:
    # A server ending an idle connection sends a FATAL error, then closes the socket. Between
    # the two, asyncpg refuses statements with a client error while `is_closed()` is false;
    # the connection must not go back to the pool then.
    single = make_engine(
        engine.url.render_as_string(hide_password=False), PoolSettings(size=1, max_overflow=0)
    )
    try:
        async with prepared.connection(single) as pooled:
            ending = pooled.driver
            assert await pooled.value("SELECT 1", []) == 1
        ending._protocol.data_received(  # type: ignore[attr-defined]
            _fatal_error_message("57P01", "terminating connection due to administrator command")
        )
        assert not ending.is_closed()
        async with prepared.connection(single) as pooled:
            assert pooled.driver is ending
            # Refused before anything was sent: the read runs again on a new connection.
            assert await pooled.value("SELECT 1", []) == 1
            assert pooled.driver is not ending
        async with prepared.connection(single) as pooled:
            assert pooled.driver is not ending
            assert await pooled.value("SELECT 1", []) == 1
        sessions = make_session_factory(single)
        async with sessions() as session:
            driver = (await (await session.connection()).get_raw_connection()).driver_connection
            driver._protocol.data_received(  # type: ignore[attr-defined]
                _fatal_error_message("57P01", "terminating connection due to administrator command")
            )
            with pytest.raises(asyncpg.InternalClientError):
                await prepared.value(session, "SELECT 1", [])
        async with sessions() as session:
            assert await prepared.value(session, "SELECT 1", []) == 1
            assert (
                await (await session.connection()).get_raw_connection()
            ).driver_connection is not driver
    finally:
        await single.dispose()


async def test_a_statement_error_keeps_the_connection(engine: AsyncEngine) -> None:
    single = make_engine(
        engine.url.render_as_string(hide_password=False), PoolSettings(size=1, max_overflow=0)
    )
    try:
        async with prepared.connection(single) as pooled:
            kept = pooled.driver
            with pytest.raises(asyncpg.DivisionByZeroError):
                await pooled.value("SELECT 1 / 0", [])
            assert not pooled.broken
        async with prepared.connection(single) as pooled:
            assert pooled.driver is kept
            assert await pooled.value("SELECT 1", []) == 1
    finally:
        await single.dispose()


async def test_only_reads_postgresql_answered_nothing_of_run_again(committed_db: str) -> None:
    # Ended by PostgreSQL before the pool's connection is used again, unnoticed by asyncpg.
    single = make_engine(committed_db, PoolSettings(size=1, max_overflow=0))
    touch = prepared.compile_shape(
        U.update().where(U.c.id == bindparam("id", type_=BigInteger)).values(name="touched")
    )
    try:
        async with prepared.connection(single) as pooled:
            ended = await pooled.value("SELECT pg_backend_pid()", [])
        assert end_backends_unnoticed(committed_db) == 1
        async with prepared.connection(single) as pooled:
            # A read runs again on a new connection.
            assert await pooled.value("SELECT pg_backend_pid()", []) != ended
        assert end_backends_unnoticed(committed_db) == 1
        async with prepared.connection(single) as pooled:
            # A write does not: without a transaction it may have committed.
            with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.AdminShutdownError)):
                await pooled.execute(touch, id=1)
            assert pooled.broken
        async with prepared.connection(single) as pooled:
            assert await pooled.value("SELECT 1", []) == 1
            ended = await pooled.value("SELECT pg_backend_pid()", [])
            # Nor a read once PostgreSQL has answered on the connection.
            conn = await asyncpg.connect(plain_url(committed_db))
            try:
                await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", ended)
            finally:
                await conn.close()
            with pytest.raises(Exception) as failed:
                await pooled.value("SELECT 1", [])
            assert connection_ended(failed.value)
    finally:
        await single.dispose()


async def _backends(url: str) -> set[int]:
    """The pids of the app's connections to the database of `url`."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        found = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'taskgraph' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {row["pid"] for row in found}


async def test_the_reserve_lends_its_connections_again_without_the_pool(
    committed_db: str,
) -> None:
    kept = make_engine(committed_db, PoolSettings(size=2, max_overflow=1))
    checkouts: list[int] = []
    event.listen(kept.sync_engine.pool, "checkout", lambda *_: checkouts.append(1))
    reserve = prepared.reserve(kept)
    try:
        async with prepared.connection(kept) as first:
            driver = first.driver
            assert await first.value("SELECT 1", []) == 1
        for _ in range(5):
            async with prepared.connection(kept) as again:
                assert again.driver is driver
                assert await again.value("SELECT 1", []) == 1
        assert len(checkouts) == 1 and connections_in_use(kept) == 0
        # Three at once (one from the overflow): the pool's size of them stay idle.
        async with (
            prepared.connection(kept) as a,
            prepared.connection(kept) as b,
            prepared.connection(kept) as c,
        ):
            assert len({id(a.driver), id(b.driver), id(c.driver)}) == 3
            assert connections_in_use(kept) == 3
        assert len(reserve.idle) == 2 and connections_in_use(kept) == 0
        # A session about to need the pool while one request holds a connection: one goes back.
        await reserve.make_room(busy=1)
        assert len(reserve.idle) == 1
        await reserve.make_room(busy=1)
        assert len(reserve.idle) == 1
        # PostgreSQL ends the idle one: taken, it is thrown away for a new one.
        idle_pid = reserve.idle[0].driver_connection.get_server_pid()  # type: ignore[union-attr]
        await end_backends(committed_db)
        async with prepared.connection(kept) as fresh:
            assert fresh.driver.get_server_pid() != idle_pid
            assert await fresh.value("SELECT 1", []) == 1
        assert await _backends(committed_db) == {
            each.driver_connection.get_server_pid()  # type: ignore[union-attr]
            for each in reserve.idle
        }
    finally:
        await kept.dispose()
    # Disposing of the engine closes the reserve's connections too.
    assert reserve.idle == [] and await _backends(committed_db) == set()


async def test_without_overflow_the_reserve_leaves_the_pool_a_connection(
    committed_db: str,
) -> None:
    kept = make_engine(committed_db, PoolSettings(size=2, max_overflow=0, timeout=2))
    try:
        async with prepared.connection(kept) as a, prepared.connection(kept) as b:
            assert await a.value("SELECT 1", []) == await b.value("SELECT 1", []) == 1
        assert len(prepared.reserve(kept).idle) == 1
        # Work outside requests (a session of its own) still gets a connection.
        async with make_session_factory(kept)() as session:
            assert (await session.execute(text("SELECT 2"))).scalar_one() == 2
    finally:
        await kept.dispose()


async def test_an_engine_let_go_goes_with_its_reserve_and_a_stale_connection_is_not_kept(
    committed_db: str,
) -> None:
    kept = make_engine(committed_db, PoolSettings(size=2, max_overflow=1))
    async with prepared.connection(kept):
        pass
    reserve = prepared.reserve(kept)
    assert len(reserve.idle) == 1
    # Taken before the engine is disposed of, given back after: it belongs to the old pool.
    async with prepared.connection(kept) as out:
        await kept.dispose()
        assert await out.value("SELECT 1", []) == 1
    assert reserve.idle == [] and await _backends(committed_db) == set()
    async with prepared.connection(kept) as fresh:
        assert await fresh.value("SELECT 1", []) == 1
    await kept.dispose()
    gone = weakref.ref(kept.sync_engine)
    del kept, reserve, out, fresh
    gc.collect()
    assert gone() is None
