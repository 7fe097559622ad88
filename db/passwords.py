"""Argon2 password hashing, done on a few threads of its own so that the event loop keeps
serving other requests.

One hash or verification costs about 0.25 s of CPU. On the event loop it would stall every
request of the worker for that long; argon2-cffi releases the GIL while it works, so on these
threads it runs beside the loop. The threads are few (they are meant to use spare cores, not
to take them all) and run at a lower scheduling priority, so that when the cores are busy the
loop's short requests go first and log-ins wait.

A caller takes a `turn` before opening a database session for a command that hashes: the
waiting happens without a connection (one held through a queue of log-ins would starve the
pool), and no more work is handed to the threads than they can do at once, so a waiting caller
that gives up leaves no work behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

THREADS = max(1, min(4, os.cpu_count() or 1))
# Added to the threads' nice value: on Linux it is per thread (setpriority on the thread id).
LOWER_PRIORITY = 10

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so that a wrong e-mail costs as much time as a
# wrong password and log-in timing does not reveal which addresses have accounts.
DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _lower_priority() -> None:
    # Where the platform offers no per-thread priority, the threads run at the loop's.
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, niceness + LOWER_PRIORITY)


_executor = ThreadPoolExecutor(
    max_workers=THREADS, thread_name_prefix="argon2", initializer=_lower_priority
)
# One per event loop: an asyncio.Semaphore belongs to the loop it first waits on.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def turn() -> AsyncIterator[None]:
    """One of the hashing threads' places, held for the duration of a command that hashes."""
    loop = asyncio.get_running_loop()
    semaphore = _turns.get(loop)
    if semaphore is None:
        semaphore = _turns[loop] = asyncio.Semaphore(THREADS)
    async with semaphore:
        yield


def hash_now(password: str) -> str:
    """Hash on the calling thread (command-line tools, data generators)."""
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_executor, _hasher.hash, password)


def _verify(stored: str, password: str) -> tuple[bool, bool]:
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(stored)


async def verify_password(stored: str, password: str) -> tuple[bool, bool]:
    """Whether `password` matches the `stored` hash, and whether the hash should be redone
    with the current parameters."""
    return await asyncio.get_running_loop().run_in_executor(_executor, _verify, stored, password)
