"""The compiled path's argument conversion builds what Strawberry's own builds."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from graphql import GraphQLObjectType
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments

from graph.argument_conversion import arguments_converter
from graph.schema import build_schema
from graph.types.common import TaskPriority, TaskStatus
from graph.types.task import OrderDirection, TaskOrderField

GIVEN: list[tuple[str, str, dict[str, Any]]] = [
    ("Project", "tasks", {}),
    ("Project", "tasks", {"first": 10, "after": "abc"}),
    ("Project", "tasks", {"last": 3, "before": None, "filter": None}),
    (
        "Project",
        "tasks",
        {
            "filter": {
                "status": [TaskStatus.TODO, TaskStatus.DONE],
                "priority": [TaskPriority.HIGH],
                "assigneeIds": ["VXNlcjox"],
                "unassigned": True,
                "labelIds": [],
                "projectIds": None,
                "dueBefore": date(2026, 12, 1),
                "dueAfter": date(2026, 1, 1),
                "completed": False,
                "search": "  Login_50% ",
            },
            "orderBy": [
                {"field": TaskOrderField.PRIORITY, "direction": OrderDirection.DESC},
                {"field": TaskOrderField.DUE_DATE, "direction": OrderDirection.ASC},
            ],
        },
    ),
    ("Workspace", "tasks", {"filter": {"search": "x"}, "orderBy": []}),
    ("Workspace", "projects", {"includeArchived": True, "first": 0}),
    ("Workspace", "project", {"key": " eng "}),
    ("Query", "nodes", {"ids": ["VGFzazox", "VGFzazoy"]}),
    ("Query", "workspace", {"slug": "acme"}),
]


@pytest.mark.parametrize(("type_name", "field_name", "given"), GIVEN)
def test_prepared_conversion_equals_strawberrys(
    type_name: str, field_name: str, given: dict[str, Any]
) -> None:
    schema = build_schema()
    core = schema._schema
    parent = core.get_type(type_name)
    assert isinstance(parent, GraphQLObjectType)
    backref = parent.fields[field_name].extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
    registry = schema.schema_converter.scalar_registry
    expected = convert_arguments(given, backref.arguments, registry, schema.config)
    converted = arguments_converter(backref.arguments, registry, schema.config)(given)
    assert converted == expected
    assert [type(v) for v in converted.values()] == [type(v) for v in expected.values()]
