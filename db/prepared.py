"""Hot read statements: built and compiled once per shape, run directly on asyncpg.

Profiles of the API's read paths (bench/README.md) showed most of a small request's time in
SQLAlchemy rather than in PostgreSQL: building the statement objects again on every call
(a windowed subquery alone cost 1.5 ms), generating its cache key, the greenlet hop and
building `Row` objects. A read here is instead written once as a SQLAlchemy Core statement
with named `bindparam`s for the values that change per call, compiled once, cached under a
key that the caller says determines everything else, and run with asyncpg's own
prepared-statement cache on the session's connection. Rows are asyncpg records that also
allow attribute access, so callers read them like SQLAlchemy rows.

A read that runs before anything else in a session goes out without an explicit `BEGIN`.
Under READ COMMITTED every statement sees its own snapshot either way, so a read-only request
saves the `BEGIN` and `ROLLBACK` round trips; once a write has begun a transaction, these
reads run inside it and see its changes. Locking reads (`FOR UPDATE`) stay on the session.

Listeners of SQLAlchemy's `before_cursor_execute` see these statements too, so statement
counts (tests, `bench/`) stay truthful; on a traced engine each gets its span
(db/statement_spans.py).
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.util import greenlet_spawn

from db import connections, statement_spans
from db.errors import connection_ended

log = logging.getLogger("taskgraph.database")

_DIALECT = PGDialect_asyncpg()
# Shapes vary with filters and sort orders, whose values are part of the key; a bound keeps a
# stream of distinct filters from growing the cache without limit.
MAX_SHAPES = 2048


class Row(asyncpg.Record):
    """An asyncpg record that also reads columns as attributes, like a SQLAlchemy `Row`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True, slots=True)
class Shape:
    sql: str
    # For each `$n`: the name of a per-call parameter, or None for a value fixed at compile time.
    names: tuple[str | None, ...]
    fixed: tuple[Any, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


def compile_shape(stmt: ClauseElement) -> Shape:
    compiled = stmt.compile(dialect=_DIALECT)
    if compiled.post_compile_params or compiled.literal_execute_params:
        # An expanding `IN` changes its text with the number of values: use `= ANY(array)`.
        raise ValueError("a cached shape cannot hold post-compile parameters")
    defaults = compiled.construct_params(_check=False)
    order = compiled.positiontup or []
    binds = compiled.binds
    names: list[str | None] = []
    fixed: list[Any] = []
    processors: list[Callable[[Any], Any] | None] = []
    for name in order:
        bind = binds.get(name)
        per_call = (
            bind is not None and bind.value is None and bind.callable is None and (not bind.unique)
        )
        names.append(name if per_call else None)
        fixed.append(None if per_call else defaults.get(name))
        processors.append(bind.type._cached_bind_processor(_DIALECT) if bind is not None else None)
    return Shape(compiled.string, tuple(names), tuple(fixed), tuple(processors))


_shapes: OrderedDict[Hashable, Shape] = OrderedDict()


def shape(key: Hashable, build: Callable[[], ClauseElement]) -> Shape:
    """The compiled statement for `key`, built with `build` the first time it is asked for."""
    found = _shapes.get(key)
    if found is None:
        found = _shapes[key] = compile_shape(build())
        if len(_shapes) > MAX_SHAPES:
            _shapes.popitem(last=False)
    return found


_DRIVER = "taskgraph.raw.driver"


async def _driver(session: AsyncSession) -> tuple[Any, asyncpg.Connection]:
    """The session's SQLAlchemy and asyncpg connections, looked up once per transaction."""
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1], cached[2]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    sync_connection = connection.sync_connection
    driver = raw.driver_connection
    session.info[_DRIVER] = (session.sync_session.get_transaction(), sync_connection, driver)
    return sync_connection, driver


def arguments(compiled: Shape, params: dict[str, Any]) -> list[Any]:
    """The positional arguments of a compiled shape; every named parameter must be given."""
    args = []
    for name, value, process in zip(
        compiled.names, compiled.fixed, compiled.processors, strict=True
    ):
        if name is not None:
            value = params[name]
        args.append(process(value) if process is not None and value is not None else value)
    return args


async def fetch(session: AsyncSession, compiled: Shape, **params: Any) -> list[Row]:
    """Run a compiled shape with its per-call parameters; every named parameter must be given."""
    args = arguments(compiled, params)
    driver, engine = await _announced(session, compiled.sql, args)
    async with _guarded(session, driver):
        with statement_spans.span(engine, compiled.sql):
            found: list[Row] = await driver.fetch(compiled.sql, *args, record_class=Row)
    connections.mark_answered(session)
    return found


async def value(session: AsyncSession, sql: str, args: Sequence[Any]) -> Any:
    """The single value of a statement written as SQL with positional parameters."""
    driver, engine = await _announced(session, sql, args)
    async with _guarded(session, driver):
        with statement_spans.span(engine, sql):
            found = await driver.fetchval(sql, *args)
    connections.mark_answered(session)
    return found


def ends_connection(error: BaseException, driver: asyncpg.Connection) -> bool:
    """Whether the connection must be thrown away, not returned to the pool, after `error`.

    Only an error PostgreSQL reported for the statement leaves the connection ready for the
    next one. A list of "connection" error classes misses a race: a server ending an idle
    connection sends a FATAL error, then closes the socket. asyncpg reads the error outside
    any statement and enters its error-consume state, but `is_closed()` stays false until it
    has read the end of the stream too; a statement sent in between fails with
    `InternalClientError` ("another operation (2) is in progress"). Kept, the connection went
    back to the pool and the request's fallback got it back, closed by then.
    """
    if driver.is_closed():
        return True
    if isinstance(error, asyncpg.PostgresError):
        if isinstance(error, asyncpg.PostgresConnectionError):
            return True
        severity = error.severity_en or error.severity  # type: ignore[attr-defined]
        return severity in ("FATAL", "PANIC")
    return True


def _ended(error: BaseException, driver: asyncpg.Connection) -> bool:
    """Whether PostgreSQL ended the connection (rather than refused the statement)."""
    return driver.is_closed() or connection_ended(error)


@asynccontextmanager
async def _guarded(session: AsyncSession, driver: asyncpg.Connection) -> AsyncIterator[None]:
    """Throw the session's connection away when it is broken; SQLAlchemy does not see the
    errors of statements sent to the driver directly."""
    try:
        yield
    except Exception as error:
        if ends_connection(error, driver):
            session.info.pop(_DRIVER, None)
            await (await session.connection()).invalidate()
        raise


class Pooled:
    """A pooled connection used without a session (see `connection`).

    Its reads (`value`, `rows`) run once more on a fresh connection when PostgreSQL had ended
    this one before answering anything on it (a pooled connection gone stale:
    db/connections.py); a write (`execute`) never does, nor anything once PostgreSQL has
    answered: outside a transaction a write commits by itself.
    """

    def __init__(self, engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
        self.engine = engine
        self._pooled: PoolProxiedConnection | None = pooled
        self.driver: asyncpg.Connection = pooled.driver_connection
        self.broken = False
        self.answered = False

    async def value(self, sql: str, args: Sequence[Any]) -> Any:
        """`value`, on this connection."""
        return await self._read(sql, args, lambda: self.driver.fetchval(sql, *args))

    async def rows(self, compiled: Shape, **params: Any) -> list[Row]:
        """`fetch`, on this connection: a read."""
        args = arguments(compiled, params)
        sql = compiled.sql
        found: list[Row] = await self._read(
            sql, args, lambda: self.driver.fetch(sql, *args, record_class=Row)
        )
        return found

    async def execute(self, compiled: Shape, **params: Any) -> None:
        """A write, committed at once (there is no transaction); never retried."""
        args = arguments(compiled, params)
        self._announce(compiled.sql, args)
        try:
            with statement_spans.span(self.engine.sync_engine, compiled.sql):
                await self.driver.execute(compiled.sql, *args)
        except Exception as error:
            self._failed(error)
            raise
        self.answered = True

    async def _read(self, sql: str, args: Sequence[Any], run: Callable[[], Awaitable[Any]]) -> Any:
        self._announce(sql, args)
        try:
            with statement_spans.span(self.engine.sync_engine, sql):
                found = await run()
        except Exception as error:
            if self.answered or not _ended(error, self.driver):
                self._failed(error)
                raise
            log.info("PostgreSQL had ended a pooled connection; the read runs on a new one")
            await self._replace()
            self._announce(sql, args)
            try:
                with statement_spans.span(self.engine.sync_engine, sql):
                    found = await run()
            except Exception as again:
                self._failed(again)
                raise
        self.answered = True
        return found

    def _announce(self, sql: str, args: Sequence[Any]) -> None:
        sync_engine = self.engine.sync_engine
        if sync_engine._has_events:
            # Statement listeners (counting, logging) see it; there is no Connection to pass.
            sync_engine.dispatch.before_cursor_execute(None, None, sql, tuple(args), None, False)

    def _failed(self, error: Exception) -> None:
        if ends_connection(error, self.driver):
            self.broken = True

    async def _replace(self) -> None:
        """Throw this connection away and go on with a fresh one from the pool."""
        self.broken = True
        await self.release()
        fresh = await self.engine.raw_connection()
        self._pooled, self.driver, self.broken = fresh, fresh.driver_connection, False

    async def release(self) -> None:
        """Give the connection back to the reserve (thrown away if it is broken); once."""
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            await reserve(self.engine).give(pooled, broken=self.broken)


async def _give_back(pooled: PoolProxiedConnection, *, broken: bool = False) -> None:
    """Return a connection to the pool, invalidated first when it is broken."""
    if broken:
        await greenlet_spawn(pooled.invalidate)
    await greenlet_spawn(pooled.close)


class Reserve:
    """Connections that statements without a session take and give back without the pool.

    Such a connection runs single statements outside any transaction, so one given back holds
    nothing to reset: the pool's checkout and return (a greenlet hop each way, its events, the
    reset's rollback) cost 34 µs of CPU alone and about 90 µs interleaved with statements, as
    much as asyncpg's own work for the statement (bench/README.md, step 23). The reserve keeps
    up to the pool's size idle, checked out of the pool; `make_room` gives one back when a
    session needs the pool, so connections of the reserve and of sessions never add up to
    more than the pool holds without overflow, and work outside requests always has the
    overflow (or, without overflow, the one connection the reserve leaves). A connection that
    PostgreSQL ended while it was idle here is thrown away when it is taken, as the pool's
    checkout does (db/connections.py); disposing of the engine closes the idle ones.
    """

    def __init__(self, engine: AsyncEngine, most: int) -> None:
        # Weakly: the reserves are kept by engine, and an engine nobody holds must go (with
        # the connections of its reserve, closed as the pool's own would be on collection).
        self._engine = weakref.ref(engine.sync_engine)
        self.most = most
        self.idle: list[PoolProxiedConnection] = []
        # Told how many connections became idle here (+1) or busy again (-1): the pool's
        # gauges count the reserve's connections as checked out (graph/metrics.py).
        self.on_change: Callable[[int], None] | None = None
        event.listen(engine.sync_engine, "engine_disposed", self._disposed)

    async def take(self) -> PoolProxiedConnection:
        idle = self.idle
        while idle:
            pooled = idle.pop()
            self._changed(-1)
            if not pooled.driver_connection.is_closed():  # type: ignore[union-attr]
                return pooled
            await _give_back(pooled, broken=True)
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the engine of this reserve is gone")
        return await greenlet_spawn(engine.raw_connection)

    async def give(self, pooled: PoolProxiedConnection, *, broken: bool = False) -> None:
        engine = self._engine()
        # One taken before the engine was disposed of belongs to the pool it had then.
        stale = engine is None or getattr(pooled, "_pool", None) is not engine.pool
        if broken or stale or len(self.idle) >= self.most:
            await _give_back(pooled, broken=broken or stale)
            return
        self.idle.append(pooled)
        self._changed(1)

    async def make_room(self, busy: int) -> None:
        """Give an idle connection back to the pool when it and `busy` connections (the
        requests' turns, graph/app.py) would not fit in the pool."""
        if self.idle and len(self.idle) + busy > self.most:
            pooled = self.idle.pop()
            self._changed(-1)
            await _give_back(pooled)

    def _changed(self, idle: int) -> None:
        if self.on_change is not None:
            self.on_change(idle)

    def _disposed(self, _engine: Any) -> None:
        # Run by AsyncEngine.dispose inside its greenlet, after the pool closed what it held:
        # these were checked out of it, so they are closed here. (Engine.dispose(close=False),
        # for a forked child, would close the parent's too: nothing here disposes so.)
        idle, self.idle = self.idle, []
        for pooled in idle:
            self._changed(-1)
            pooled.invalidate()


_RESERVES: weakref.WeakKeyDictionary[Any, Reserve] = weakref.WeakKeyDictionary()


def keep_reserve(engine: AsyncEngine, pool_size: int, max_overflow: int) -> None:
    """Give the engine a reserve as large as its pool, or one smaller without overflow
    (db/engine.py)."""
    _RESERVES[engine.sync_engine] = Reserve(
        engine, pool_size if max_overflow > 0 else pool_size - 1
    )


def reserve(engine: AsyncEngine) -> Reserve:
    """The engine's reserve of connections for statements without a session; an engine made
    elsewhere has one that keeps nothing."""
    found = _RESERVES.get(engine.sync_engine)
    if found is None:
        found = _RESERVES[engine.sync_engine] = Reserve(engine, 0)
    return found


@asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[Pooled]:
    """A connection without a session or a transaction, from the engine's reserve: for a
    request that is one read statement (graph/compiled.py). A session costs about 0.2 ms of
    CPU to open, check out and close; taking a connection from the reserve, a few µs."""
    used = Pooled(engine, await reserve(engine).take())
    try:
        yield used
    except BaseException as error:
        # Cancelled, the connection may have been cut off mid-statement. An error of a
        # statement was judged where it was raised (`_failed`); any other error (a bad API
        # key, say) leaves the connection as good as it was.
        if not isinstance(error, Exception):
            used.broken = True
        raise
    finally:
        await used.release()


async def _announced(
    session: AsyncSession, sql: str, args: Sequence[Any]
) -> tuple[asyncpg.Connection, Any]:
    """The session's asyncpg connection and engine, after telling statement listeners what
    will run."""
    sync_connection, driver = await _driver(session)
    engine = sync_connection.engine
    if sync_connection._has_events or engine._has_events:
        sync_connection.dispatch.before_cursor_execute(
            sync_connection, None, sql, tuple(args), None, False
        )
    return driver, engine


async def rows(
    session: AsyncSession, key: Hashable, build: Callable[[], ClauseElement], **params: Any
) -> list[Row]:
    return await fetch(session, shape(key, build), **params)


async def by_id(
    session: AsyncSession, key: Hashable, build: Callable[[], ClauseElement], **params: Any
) -> dict[Any, Row]:
    """`rows`, keyed by their `id` column (the loaders' objects-by-id reads)."""
    return {row["id"]: row for row in await fetch(session, shape(key, build), **params)}
