"""Ending the server's connections from PostgreSQL's side, as a restart, an operator's
`pg_terminate_backend` or `idle_session_timeout` do: only the backends of the test's own
database that the app opened (application_name `taskgraph`), never anyone else's."""

from __future__ import annotations

import asyncio
import threading

import asyncpg
from sqlalchemy.engine import make_url

_END = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'taskgraph'
  AND pid <> pg_backend_pid() AND ($1 OR state = 'idle')
"""


def plain_url(url: str) -> str:
    """An asyncpg URL of a SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def end_backends(url: str, *, busy_too: bool = False) -> int:
    """End the app's idle connections to the database of `url` (and busy ones with
    `busy_too`), once their backends have exited; the number ended."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        ended: int = await conn.fetchval(_END, busy_too)
    finally:
        await conn.close()
    # The sockets are closed now; a turn of the event loop lets asyncpg read their end.
    await asyncio.sleep(0.01)
    return ended


def end_backends_unnoticed(url: str) -> int:
    """`end_backends`, with the calling thread (and its event loop) held until the backends
    have exited: the loop's connections have not seen them close, as when a request takes a
    connection from the pool in the instant PostgreSQL ends it."""
    ended: list[int] = []

    async def end() -> None:
        conn = await asyncpg.connect(plain_url(url))
        try:
            ended.append(await conn.fetchval(_END, False))
        finally:
            await conn.close()

    worker = threading.Thread(target=lambda: asyncio.run(end()))
    worker.start()
    worker.join()
    return ended[0]
