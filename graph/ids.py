"""Opaque global IDs: base64 of "<TypeName>:<database id>" (Relay object identification)."""

from __future__ import annotations

import base64
import binascii

from db.errors import InvalidArgument

NODE_TYPES = frozenset(
    {"User", "Workspace", "Project", "Task", "Label", "Comment", "Activity", "ApiKey"}
)
_MAX_DB_ID = 2**63 - 1


def to_global_id(type_name: str, db_id: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{db_id}".encode()).decode().rstrip("=")


def from_global_id(global_id: str) -> tuple[str, int]:
    """(type name, database id), or InvalidArgument for anything that is not one of our IDs."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        db_id = int(raw)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument(f"Invalid ID: {global_id[:60]!r}.") from None
    if type_name not in NODE_TYPES or not 0 < db_id <= _MAX_DB_ID or not raw.isdigit():
        raise InvalidArgument(f"Invalid ID: {global_id[:60]!r}.")
    return type_name, db_id


def db_id_of(global_id: str, expected: str, *, argument: str = "id") -> int:
    """The database id of an ID that must be of type `expected`."""
    type_name, db_id = from_global_id(global_id)
    if type_name != expected:
        raise InvalidArgument(f"`{argument}` must be the ID of a {expected}, not of a {type_name}.")
    return db_id
