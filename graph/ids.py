"""Opaque global IDs: base64 of "<TypeName>:<database id>" (Relay object identification).

The format itself, in Python and in SQL, is `db.wire`'s."""

from __future__ import annotations

from db.errors import InvalidArgument
from db.wire import NODE_TYPES, from_global_id
from db.wire import global_id as to_global_id

__all__ = ["NODE_TYPES", "db_id_of", "from_global_id", "to_global_id"]


def db_id_of(global_id: str, expected: str, *, argument: str = "id") -> int:
    """The database id of an ID that must be of type `expected`."""
    type_name, db_id = from_global_id(global_id)
    if type_name != expected:
        raise InvalidArgument(f"`{argument}` must be the ID of a {expected}, not of a {type_name}.")
    return db_id
