"""How values are written in API responses: each format once in Python and once in SQL.

The resolvers write values in Python; the compiled read path has PostgreSQL write the whole
response (`db.json_statement`). Each format below is therefore written twice, side by side,
and tests/db/test_wire.py checks that the two agree on awkward values (whole seconds, tiny
and huge floats, non-ASCII text, infinite dates). SQL builders take and return SQLAlchemy
expressions; the SQL form of a value is what `json_build_object` turns into the same JSON
as the Python form.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import JSON, BigInteger, Date, Text, case, cast, func, literal_column
from sqlalchemy.sql.elements import ColumnElement

from db.errors import InvalidArgument

Sql = ColumnElement[Any]


def sql_string(value: str) -> Sql:
    """A constant string written into the statement (type names, format patterns, response
    keys): fixed per statement shape, so not a parameter."""
    return literal_column("'" + value.replace("'", "''") + "'", Text)


# -- base64url without padding (global IDs, cursors) -----------------------------------------


def base64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def base64url_sql(text: Sql) -> Sql:
    # PostgreSQL's base64 also breaks lines every 76 characters; those go with the padding.
    encoded = func.encode(func.convert_to(text, sql_string("UTF8")), sql_string("base64"))
    return func.rtrim(
        func.translate(encoded, sql_string("+/\n"), sql_string("-_")), sql_string("=")
    )


def unbase64url(text: str) -> str:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode()).decode()


# -- global IDs: base64 of "<TypeName>:<database id>" ------------------------------------------

NODE_TYPES = frozenset(
    {"User", "Workspace", "Project", "Task", "Label", "Comment", "Activity", "ApiKey"}
)
_MAX_DB_ID = 2**63 - 1


def global_id(type_name: str, db_id: int) -> str:
    return base64url(f"{type_name}:{db_id}")


def global_id_sql(type_name: str, db_id: Sql) -> Sql:
    return base64url_sql(sql_string(f"{type_name}:").concat(cast(db_id, Text)))


def from_global_id(value: str) -> tuple[str, int]:
    """(type name, database id), or InvalidArgument for anything that is not one of our IDs."""
    try:
        type_name, _, raw = unbase64url(value).partition(":")
        db_id = int(raw)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument(f"Invalid ID: {value[:60]!r}.") from None
    if type_name not in NODE_TYPES or not 0 < db_id <= _MAX_DB_ID or not raw.isdigit():
        raise InvalidArgument(f"Invalid ID: {value[:60]!r}.")
    return type_name, db_id


# -- timestamps and dates ------------------------------------------------------------------

# Python's `datetime.isoformat()` of a UTC timestamp: microseconds only when there are any.
_ISO_US = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def timestamp(value: datetime) -> str:
    return value.isoformat()


def timestamp_sql(value: Sql) -> Sql:
    utc = func.timezone(sql_string("UTC"), value)
    return func.replace(
        func.to_char(utc, sql_string(_ISO_US)), sql_string(".000000+"), sql_string("+")
    )


def day(value: date) -> str:
    return value.isoformat()


def day_sql(value: Sql) -> Sql:
    # asyncpg reads PostgreSQL's 'infinity' as date.max and '-infinity' as date.min, whose
    # isoformats are 9999-12-31 and 0001-01-01; to_char gives NULL for them.
    infinite = case(
        (value > cast(sql_string("epoch"), Date), sql_string("9999-12-31")),
        else_=sql_string("0001-01-01"),
    )
    return case(
        (func.isfinite(value), func.to_char(value, sql_string("YYYY-MM-DD"))),
        (value.isnot(None), infinite),
    )


# -- floats, as orjson writes them ---------------------------------------------------------


def number(value: float) -> str:
    return orjson.dumps(value).decode()


def number_sql(x: Sql) -> Sql:
    """JSON text of a float as orjson writes it. PostgreSQL drops the `.0` of whole numbers,
    zero-pads exponents and switches to them at 1e-5, where orjson writes `1024.0`, `1.5e-7`
    and `0.00003`. (Fractions above 1e15 still differ in form, not in value.)"""
    text = cast(x, Text)
    digits = func.split_part(cast(func.abs(x), Text), sql_string("e"), literal_column("1"))
    small = func.replace(digits, sql_string("."), sql_string(""))
    return case(
        (x == 0, text.concat(sql_string(".0"))),
        (
            (x == func.trunc(x)) & (func.abs(x) < 1e16),
            cast(cast(x, BigInteger), Text).concat(sql_string(".0")),
        ),
        (func.abs(x) >= 1e-4, text),
        (
            func.abs(x) >= 1e-5,
            case((x < 0, sql_string("-")), else_=sql_string(""))
            .concat(sql_string("0.0000"))
            .concat(small),
        ),
        else_=func.regexp_replace(text, sql_string("e-0*([0-9]+)$"), sql_string("e-\\1")),
    )


def number_json_sql(x: Sql) -> Sql:
    """`number_sql` as a JSON number inside `json_build_object`."""
    return cast(number_sql(x), JSON)


# -- enums written by name from a stored number ----------------------------------------------


def enum_name_sql(value: Sql, names: Sequence[str]) -> Sql:
    """The name of member `value` of an enum stored as its number 0, 1, ... (`names` in order)."""
    return case({i: sql_string(n) for i, n in enumerate(names)}, value=value)


# -- task keys: "<project key>-<number>" ---------------------------------------------------------


def task_key(project_key: str, number: int) -> str:
    return f"{project_key}-{number}"


def task_key_sql(project_key: Sql, number: Sql) -> Sql:
    return project_key.concat(sql_string("-")).concat(cast(number, Text))


# -- cursors: base64 of ["<ordering fingerprint>",[<sort-key values>]] ------------------------


class CursorKey(Protocol):
    """What a cursor needs of a sort key (`db.pagination.SortKey`)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "int", "float", "datetime", "date", "str"
    @property
    def descending(self) -> bool: ...


def fingerprint(keys: Sequence[CursorKey]) -> str:
    return ",".join(f"{k.name}:{'d' if k.descending else 'a'}" for k in keys)


def _cursor_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def cursor(keys: Sequence[CursorKey], values: Sequence[Any]) -> str:
    payload = orjson.dumps([fingerprint(keys), [_cursor_value(v) for v in values]])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _cursor_value_sql(kind: str, value: Sql) -> Sql:
    if kind == "int":
        return cast(value, Text)
    if kind == "str":
        return cast(func.to_json(cast(value, Text)), Text)
    if kind == "float":
        return number_sql(value)
    if kind == "datetime":
        return sql_string('"').concat(timestamp_sql(value)).concat(sql_string('"'))
    if kind == "date":
        return sql_string('"').concat(day_sql(value)).concat(sql_string('"'))
    raise ValueError(f"no SQL cursor for {kind} keys")


def cursor_sql(keys: Sequence[CursorKey], values: Sequence[Sql]) -> Sql:
    payload: Sql = sql_string(f'["{fingerprint(keys)}",[')
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        if i:
            payload = payload.concat(sql_string(","))
        payload = payload.concat(_cursor_value_sql(key.kind, value))
    return base64url_sql(payload.concat(sql_string("]]")))


def _decode_value(raw: Any, kind: str) -> Any:
    # Integer keys are bigint columns: a larger value would fail as a statement parameter.
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        if not -(2**63) <= raw <= _MAX_DB_ID:
            raise ValueError("beyond bigint")
        return raw
    if kind == "float" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind == "str" and isinstance(raw, str):
        if "\x00" in raw:
            raise ValueError("PostgreSQL text holds no NUL")
        return raw
    if kind == "datetime" and isinstance(raw, str):
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        # One the database can hold: in UTC within the years 1-9999.
        parsed.astimezone(UTC)
        return parsed
    if kind == "date" and isinstance(raw, str):
        return date.fromisoformat(raw)
    raise ValueError(f"expected {kind}")


def decode_cursor(value: str, keys: Sequence[CursorKey]) -> list[Any]:
    """The sort-key values of a cursor made for `keys`; InvalidArgument for anything else."""
    try:
        found, raw_values = orjson.loads(unbase64url(value))
        if found != fingerprint(keys):
            raise InvalidArgument("The cursor belongs to a different ordering of this list.")
        if not isinstance(raw_values, list) or len(raw_values) != len(keys):
            raise ValueError("wrong arity")
        return [_decode_value(v, k.kind) for v, k in zip(raw_values, keys, strict=True)]
    except InvalidArgument:
        raise
    except (
        ValueError,
        TypeError,
        OverflowError,
        binascii.Error,
        orjson.JSONDecodeError,
        UnicodeError,
    ):
        raise InvalidArgument(f"Invalid cursor: {value[:40]!r}.") from None
