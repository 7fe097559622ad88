"""Each response format written in Python and in SQL (db/wire.py) gives the same text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import BigInteger, Date, Float, Text, bindparam, literal, select
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.ext.asyncio import AsyncSession

from db import wire
from db.errors import InvalidArgument
from db.models import Task
from db.pagination import SortKey

T = Task.__table__

FLOATS = [
    0.0,
    -0.0,
    1.0,
    1024.0,
    -3.0,
    0.1,
    1536.25,
    3.0517578125e-05,
    0.00003,
    0.0001,
    1.5e-7,
    -2.5e-9,
    123456789.125,
    1e15,
    9007199254740993.0,
    1e16,
    1e22,
    -0.5,
]
TIMES = [
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 1, 12, 30, 5, 1, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 2, 0, tzinfo=UTC) + timedelta(microseconds=500000),
]
DAYS = [date(2026, 1, 1), date(1, 1, 1), date(9999, 12, 30), date(2024, 2, 29)]
TEXTS = ["plain", 'quote " backslash \\', "émoji 🚀", "tab\tnew\nline", "\x01\x1f", "'single'", ""]


async def _sql(session: AsyncSession, expr: Any) -> Any:
    return (await session.execute(select(expr))).scalar_one()


async def test_floats_are_written_as_orjson_writes_them(session: AsyncSession) -> None:
    for value in FLOATS:
        sql = await _sql(session, wire.number_sql(literal(value, Float)))
        assert sql == wire.number(value), value
        assert orjson.loads(sql) == value


async def test_timestamps_and_dates_are_written_as_isoformat(session: AsyncSession) -> None:
    for moment in TIMES:
        written = await _sql(session, wire.timestamp_sql(literal(moment, TIMESTAMP(timezone=True))))
        assert written == wire.timestamp(moment), moment
    for day in DAYS:
        assert await _sql(session, wire.day_sql(literal(day, Date))) == wire.day(day)
    # 'infinity' (the undated tasks' sort value) reads as date.max in Python.
    infinite = await _sql(session, wire.day_sql(literal("infinity", Text).cast(Date)))
    assert infinite == wire.day(date.max)


async def test_global_ids_and_task_keys(session: AsyncSession) -> None:
    for type_name in sorted(wire.NODE_TYPES):
        for db_id in (1, 42, 2**31, 2**63 - 1):
            written = await _sql(session, wire.global_id_sql(type_name, literal(db_id, BigInteger)))
            assert written == wire.global_id(type_name, db_id)
            assert wire.from_global_id(written) == (type_name, db_id)
    key = wire.task_key_sql(literal("ENG", Text), literal(42, BigInteger))
    assert await _sql(session, key) == wire.task_key("ENG", 42)


async def test_cursors_are_the_same_bytes_in_sql_and_python(session: AsyncSession) -> None:
    cases: list[tuple[list[SortKey], list[Any], list[Any]]] = []
    for text in TEXTS:
        keys = [SortKey("slug", T.c.title, "str"), SortKey("ID", T.c.id, "int", True)]
        cases.append((keys, [text, 7], [Text, BigInteger]))
    for value in FLOATS[:8]:
        cases.append(([SortKey("POSITION", T.c.position, "float")], [value], [Float]))
    for moment in TIMES:
        keys = [SortKey("CREATED_AT", T.c.created_at, "datetime", True)]
        cases.append((keys, [moment], [TIMESTAMP(timezone=True)]))
    for day in DAYS:
        cases.append(([SortKey("DUE_DATE", T.c.due_date, "date")], [day], [Date]))
    for keys, values, types in cases:
        exprs = [
            bindparam(f"v{i}", v, type_=t)
            for i, (v, t) in enumerate(zip(values, types, strict=True))
        ]
        written = await _sql(session, wire.cursor_sql(keys, exprs))
        assert written == wire.cursor(keys, values), (keys, values)
        assert wire.decode_cursor(written, keys) == values


def test_cursors_the_database_cannot_hold_are_refused() -> None:
    slug = [SortKey("slug", T.c.title, "str")]
    created = [SortKey("CREATED_AT", T.c.created_at, "datetime")]
    by_id = [SortKey("ID", T.c.id, "int")]
    forged = [
        # JSON reads unsigned 64-bit numbers too; PostgreSQL's bigint ends at 2**63 - 1.
        (wire.cursor(by_id, [2**63]), by_id),
        (wire.cursor(by_id, [2**64 - 1]), by_id),
        (wire.cursor(slug, ["a\x00b"]), slug),
        (wire.cursor(slug, [1]), slug),
        (wire.base64url('["CREATED_AT:a",["0001-01-01T00:00:00+05:00"]]'), created),
        (wire.base64url('["CREATED_AT:a",["9999-12-31T23:00:00-05:00"]]'), created),
        (wire.base64url('["CREATED_AT:a",["2026-01-01T00:00:00"]]'), created),
        ("not base64 at all", created),
    ]
    for cursor, keys in forged:
        with pytest.raises(InvalidArgument):
            wire.decode_cursor(cursor, keys)
    assert wire.decode_cursor(wire.cursor(by_id, [2**63 - 1]), by_id) == [2**63 - 1]
    assert wire.decode_cursor(wire.cursor(by_id, [-(2**63)]), by_id) == [-(2**63)]
