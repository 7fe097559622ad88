"""Small SQL building blocks shared by the domain modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, BindParameter, ColumnElement, Text, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


def any_id(column: ColumnElement[Any], ids: Sequence[int]) -> ColumnElement[bool]:
    """`column = ANY($1)` with one array parameter.

    Unlike an expanding `IN (...)`, the SQL text does not change with the number of ids, so
    PostgreSQL's prepared-statement cache is hit for every batch size.
    """
    return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def any_str(column: ColumnElement[Any], values: Sequence[str]) -> ColumnElement[bool]:
    return column == any_(bindparam(None, list(values), type_=ARRAY(Text)))


def ids_param(name: str) -> BindParameter[Any]:
    """A per-call array of ids in a cached statement (`db.prepared`)."""
    return bindparam(name, type_=ARRAY(BigInteger))


def in_ids(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column = ANY(:name)`, the ids given per call (`db.prepared`); `any_id` with a parameter."""
    return column == any_(ids_param(name))
