"""Logs: one line per request, and one formatter for every logger of the process.

Each request to /graphql gets an id: the client's `X-Request-ID` when it is a plain token of
up to 128 characters, else a new one. The id goes back as the `X-Request-ID` header and in
every error's `extensions.requestId`, so that a user's report finds its log line.

The line says what an operator asks of a request: its id, operation name and type, the
principal (`user:7`, `key:3` or `anonymous`), status, duration, SQL statements, query cost and
error codes. It holds no credential and no variable: never the `Authorization` header, a
token, a password or a key's secret (tests/graph/test_request_log.py sends them all).

Lines are JSON when the output is not a terminal (or `LOG_FORMAT=json`), else plain text.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("taskgraph.request")

_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(given: str | None) -> str:
    if given is not None and _GOOD_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


@dataclass(slots=True)
class Entry:
    """What the line of one request says; filled in as the request goes."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    operation_name: str | None = None
    operation_type: str | None = None
    principal: str = "anonymous"
    status: int = 0
    statements: int = 0
    cost: int | None = None
    errors: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "operation_name": self.operation_name,
            "operation_type": self.operation_type,
            "principal": self.principal,
            "status": self.status,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "statements": self.statements,
            "cost": self.cost,
            "errors": self.errors,
        }


_current: ContextVar[Entry | None] = ContextVar("taskgraph_request", default=None)


def current() -> Entry | None:
    return _current.get()


@contextmanager
def logged(entry: Entry) -> Iterator[Entry]:
    """Count the request's statements, and write its line at the end."""
    token = _current.set(entry)
    try:
        yield entry
    finally:
        _current.reset(token)
        if log.isEnabledFor(logging.INFO):
            log.info("request", extra={"request": entry.fields()})


def _counted(*_: Any) -> None:
    entry = _current.get()
    if entry is not None:
        entry.statements += 1


def count_statements(engine: AsyncEngine) -> None:
    """Every statement of the engine counts towards the request that runs it. Once per
    engine, however many apps share it (the tests' apps do)."""
    if not event.contains(engine.sync_engine, "before_cursor_execute", _counted):
        event.listen(engine.sync_engine, "before_cursor_execute", _counted)


class Formatter(logging.Formatter):
    """JSON lines: time, level, logger, message, and a request's fields when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "request", None)
        if request is not None:
            line.update(request)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request = getattr(record, "request", None)
        if request is not None:
            text += " " + " ".join(f"{k}={v}" for k, v in request.items() if v not in (None, []))
        return text


def configure(level: str = "INFO", format: str = "auto") -> None:
    """Every logger of the process (ours, uvicorn's, SQLAlchemy's) through one handler."""
    as_json = format == "json" or (format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(Formatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy"):
        # Their own handlers go: the root's formats them.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Uvicorn's access line says less than the request line; it stays off.
    logging.getLogger("uvicorn.access").disabled = True
    # SQLAlchemy writes every statement and its parameters at INFO: only its warnings, unless
    # the operator asks for DEBUG.
    logging.getLogger("sqlalchemy").setLevel(
        logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    )
