"""Every field a query can reach has a read description, so no field quietly leaves the
compiled path for the resolvers (db/read_types.py)."""

from __future__ import annotations

from graphql import GraphQLObjectType, get_named_type, is_object_type

from db.descriptions import Listing
from db.read_types import TYPES
from graph.compiled import _python_name
from graph.schema import build_schema

# The fields of a connection, its edges and page info are the pages' own (db.json_statement).
PAGED = {
    "Connection": {"nodes", "edges", "pageInfo", "totalCount"},
    "Edge": {"cursor", "node"},
    "PageInfo": {"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"},
}


def test_every_field_reachable_from_query_is_described() -> None:
    schema = build_schema()._schema
    assert schema.query_type is not None
    missing: list[str] = []
    seen: set[str] = set()
    todo: list[GraphQLObjectType] = [schema.query_type]
    while todo:
        parent = todo.pop()
        if parent.name in seen:
            continue
        seen.add(parent.name)
        paged = next((k for k in PAGED if parent.name.endswith(k)), None)
        for name, definition in parent.fields.items():
            if paged is not None:
                if name not in PAGED[paged]:
                    missing.append(f"{parent.name}.{name}")
            elif parent.name not in TYPES:
                missing.append(f"{parent.name} (the whole type)")
                break
            elif _python_name(definition) not in TYPES[parent.name].fields:
                missing.append(f"{parent.name}.{name}")
            elif isinstance(TYPES[parent.name].fields[_python_name(definition)], Listing):
                assert get_named_type(definition.type).name.endswith("Connection")
            named = get_named_type(definition.type)
            if is_object_type(named):
                todo.append(named)  # type: ignore[arg-type]
            for possible in (
                schema.get_possible_types(named)
                if not is_object_type(named) and hasattr(named, "fields")
                else ()
            ):
                todo.append(possible)
    assert not missing, missing
    # Every Node type is reached, and nothing is described that the schema does not have.
    assert {
        "User",
        "Workspace",
        "Project",
        "Task",
        "Label",
        "Comment",
        "Activity",
        "ApiKey",
    } <= seen
    assert set(TYPES) <= seen
