"""The calculated query cost of graph/query_cost.py: a table of documents and their costs."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import build_schema as build_graphql_schema
from graphql import get_introspection_query, parse, validate

from graph.query_cost import CostPlan, CostPlans, check_cost, cost_extension, requested_cost
from graph.rate_limits import Throttle
from graph.schema import build_schema

SCHEMA = build_schema(debug=False)._schema

CASES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("an object", "{ me { name } }", None, 1),
    ("scalars and __typename cost nothing", "{ __typename me { id name email } }", None, 1),
    ("a connection without nodes", "{ workspaces(first: 5) { totalCount } }", None, 2),
    ("a connection's page", "{ workspaces(first: 5) { nodes { slug } } }", None, 7),
    ("the default page size", "{ workspaces { nodes { slug } } }", None, 52),
    (
        "nested connections multiply",
        "{ workspaces(first: 5) { nodes { projects(first: 3) { nodes { name } } } } }",
        None,
        32,
    ),
    (
        "nodes, edges and pageInfo select the same page",
        "{ workspaces(first: 4) { edges { cursor node { slug } } nodes { name }"
        " pageInfo { hasNextPage } totalCount } }",
        None,
        6,
    ),
    (
        "edges with a nested connection",
        "{ workspaces(first: 2) { edges { node { projects(first: 10) { nodes { id } } } } } }",
        None,
        28,
    ),
    (
        "last",
        '{ workspace(slug: "w") { projects(first: 2) {'
        " nodes { tasks(last: 10) { nodes { key } } } } } }",
        None,
        29,
    ),
    (
        "first and last: the larger",
        '{ workspace(slug: "w") { tasks(first: 3, last: 20) { nodes { key } } } }',
        None,
        23,
    ),
    (
        "a page larger than the maximum costs the maximum (it is refused when run)",
        "{ workspaces(first: 1000) { nodes { slug } } }",
        None,
        102,
    ),
    ("first: 0", "{ workspaces(first: 0) { nodes { slug } } }", None, 2),
    (
        "a plain list counts as one object",
        '{ workspace(slug: "w") { labels { name workspace { slug } } apiKeys { name } } }',
        None,
        4,
    ),
    (
        "fragments",
        "{ workspaces(first: 2) { ...W } } fragment W on WorkspaceConnection { nodes { ...P } }"
        " fragment P on Workspace { projects(first: 2) { nodes { id } } }",
        None,
        12,
    ),
    (
        "@include and @skip count statically",
        "query($x: Boolean!) { me @include(if: $x) { name }"
        " workspaces(first: 1) @skip(if: true) { nodes { id } } }",
        {"x": False},
        4,
    ),
    ("aliases count apart", "{ a: me { name } b: me { name } }", None, 2),
    ("one key merged", "{ me { name } me { id } }", None, 1),
    (
        "node: the largest selection over its types",
        '{ node(id: "x") { id ... on Task { assignee { name } project { name } }'
        " ... on Comment { author { name } } } }",
        None,
        3,
    ),
    (
        "nodes: weighted by the number of ids",
        '{ nodes(ids: ["a", "b", "c"]) { id ... on Task { comments(first: 5) { nodes { body } } }'
        " ... on Project { name } } }",
        None,
        24,
    ),
    (
        "a mutation's root field",
        'mutation { logOut(input: {refreshToken: "x"}) { ok } }',
        None,
        10,
    ),
    (
        "a mutation's payload",
        'mutation { createTask(input: {projectId: "p", title: "t"}) {'
        " task { id labels { name } } userErrors { message } } }",
        None,
        13,
    ),
    (
        "two mutations",
        'mutation { a: deleteLabel(input: {id: "x"}) { deletedLabelId }'
        ' b: deleteLabel(input: {id: "y"}) { userErrors { code } } }',
        None,
        21,
    ),
    ("introspection", "{ __schema { queryType { name } } }", None, 2),
]


@pytest.mark.parametrize(
    ("query", "variables", "cost"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cost(query: str, variables: dict[str, Any] | None, cost: int) -> None:
    document = parse(query)
    assert validate(SCHEMA, document) == []
    assert requested_cost(SCHEMA, document, None, variables) == cost


PAGE = "query($n: Int) { workspaces(first: $n) { nodes { slug } } }"


@pytest.mark.parametrize(
    ("variables", "cost"),
    [({"n": 10}, 12), ({}, 52), (None, 52), ({"n": None}, 52), ({"n": 1000}, 102), ({"n": -5}, 2),
     ({"n": "ten"}, 52)],
)  # fmt: skip
def test_page_size_from_a_variable(variables: dict[str, Any] | None, cost: int) -> None:
    plan = CostPlan.for_document(SCHEMA, parse(PAGE), None)
    assert not isinstance(plan.expr, int)
    assert plan.cost(variables) == cost


def test_a_variable_s_default() -> None:
    plan = CostPlan.for_document(
        SCHEMA, parse("query($n: Int = 7) { workspaces(first: $n) { nodes { slug } } }"), None
    )
    assert plan.cost({}) == 9
    assert plan.cost({"n": 3}) == 5


def test_ids_and_page_sizes_from_variables() -> None:
    query = """query($ids: [ID!]!, $n: Int) { nodes(ids: $ids) {
      ... on Project { tasks(first: $n) { nodes { id } } } } }"""
    plan = CostPlan.for_document(SCHEMA, parse(query), None)
    assert plan.cost({"ids": ["a", "b"], "n": 10}) == 2 * (1 + 12)
    assert plan.cost({"ids": ["a", "b"]}) == 2 * (1 + 52)
    # A single value is coerced to a list of one; more than the maximum is refused when run.
    assert plan.cost({"ids": "a", "n": 1}) == 1 + 3
    assert plan.cost({"ids": [str(i) for i in range(500)], "n": 1}) == 100 * 4
    listed = CostPlan.for_document(
        SCHEMA, parse("query($a: ID!) { nodes(ids: [$a, $a, $a]) { id } }"), None
    )
    assert listed.cost({"a": "x"}) == 3


def test_documents_without_size_variables_are_folded_into_a_constant() -> None:
    query = """query($x: Boolean!) {
      workspaces(first: 2) { nodes { projects { nodes { id } } } } me @include(if: $x) { id } }"""
    plan = CostPlan.for_document(SCHEMA, parse(query), None)
    assert plan.expr == 2 + 2 * (1 + 52) + 1


def test_the_operation_that_runs() -> None:
    document = parse("query A { me { id } } query B { workspaces(first: 3) { nodes { id } } }")
    assert requested_cost(SCHEMA, document, "A", None) == 1
    assert requested_cost(SCHEMA, document, "B", None) == 5
    assert requested_cost(SCHEMA, document, None, None) == 0
    assert requested_cost(SCHEMA, document, "C", None) == 0


def test_fragment_cycles_are_cut() -> None:
    document = parse(
        "{ me { ...A } } fragment A on User { ...B name } fragment B on User { ...A id }"
    )
    assert requested_cost(SCHEMA, document, None, None) == 1
    nested = parse(
        '{ node(id: "x") { ...T } } fragment T on Task { assignee { ...U } }'
        " fragment U on User { ...U }"
    )
    assert requested_cost(SCHEMA, nested, None, None) == 2


def test_introspection_is_cheap() -> None:
    cost = requested_cost(SCHEMA, parse(get_introspection_query(descriptions=True)), None, None)
    assert 0 < cost < 100


def test_plans_are_kept_by_text_and_operation() -> None:
    plans = CostPlans(SCHEMA, max_documents=2)
    first = plans.plan(PAGE, None)
    assert plans.plan(PAGE, None) is first
    assert plans.plan(PAGE, "Other") is not first
    plans.plan("{ me { id } }", None)
    assert len(plans.plans) == 2
    assert plans.plan(PAGE, None) is not first


def test_cost_over_the_maximum() -> None:
    query = "{ workspaces(first: 100) { nodes { projects(first: 100) { nodes { id } } } } }"
    cost = requested_cost(SCHEMA, parse(query), None, None)
    assert cost == 2 + 100 * (1 + 102)
    error = check_cost(cost, 1000)
    assert error is not None
    assert error.message.startswith("Query cost 10302 exceeds the limit of 1000. Ask for smaller")
    assert error.extensions == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "cost",
        "maximum": 1000,
        "cost": 10302,
    }
    assert check_cost(1000, 1000) is None


def test_the_response_extension() -> None:
    throttle = Throttle(True, 1949.96, 0.0, 2000.0, 100.0)
    assert cost_extension(52, throttle) == {
        "cost": {
            "requestedQueryCost": 52,
            "actualQueryCost": 52,
            "throttleStatus": {
                "maximumAvailable": 2000.0,
                "currentlyAvailable": 1950.0,
                "restoreRate": 100.0,
            },
        }
    }
    assert cost_extension(7, actual=3) == {"cost": {"requestedQueryCost": 7, "actualQueryCost": 3}}


def test_types_without_descriptions_by_their_shape() -> None:
    schema = build_graphql_schema("""
      type Query { things(first: Int, last: Int): ThingConnection! either: Either item: Thing }
      type ThingConnection { nodes: [Thing!]! pageInfo: Info! }
      type Info { more: Boolean! }
      type Thing { name: String! parts: [Part!]! }
      type Part { thing: Thing }
      union Either = Thing | Part
    """)
    cases = {
        "{ things(first: 4) { nodes { name } pageInfo { more } } }": 2 + 4,
        "{ things { nodes { parts { thing { name } } } } }": 2 + 50 * (1 + 2),
        "{ item { parts { thing { parts { thing { name } } } } } }": 5,
        "{ either { ... on Thing { name } ... on Part { thing { name } } } }": 2,
    }
    for query, cost in cases.items():
        assert validate(schema, parse(query)) == [], query
        assert requested_cost(schema, parse(query), None, None) == cost, query


def test_variables_that_are_not_an_object_count_as_none() -> None:
    plan = CostPlan.for_document(SCHEMA, parse(PAGE), None)
    assert plan.cost(["n", 3]) == 52  # type: ignore[arg-type]
