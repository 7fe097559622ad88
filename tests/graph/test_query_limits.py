"""The document limits of graph/query_limits.py: each limit, through fragments, with cycles,
and GraphiQL's introspection query within the defaults."""

from __future__ import annotations

import pytest
from graphql import GraphQLSyntaxError, get_introspection_query, parse, validate

from graph.query_limits import (
    DEFAULT_LIMITS,
    Limits,
    check,
    limits_rule,
    measure,
    parse_limited,
)
from graph.schema import build_schema
from graph.settings import Settings

SCHEMA = build_schema(debug=False)._schema


def _nested(depth: int) -> str:
    """A valid query `depth` fields deep: me, its workspaces' projects' workspaces' ..."""
    chain = ["me", "workspaces", "nodes"]
    while len(chain) < depth - 1:
        chain += ["projects", "nodes", "workspace"]
    chain = chain[: depth - 1]
    leaf = "totalCount" if chain[-1] in ("workspaces", "projects") else "id"
    query = leaf
    for name in reversed(chain):
        query = f"{name} {{ {query} }}"
    return f"{{ {query} }}"


def _code(error: object) -> str:
    return error.extensions["code"]  # type: ignore[attr-defined,no-any-return]


def test_depth_counts_fields_on_the_longest_path() -> None:
    document = parse("{ me { name } workspaces { nodes { projects { nodes { key } } } } }")
    operation = document.definitions[0]
    assert measure(operation, {}).depth == 5  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [11, 12])
def test_depth_at_the_limit_passes(depth: int) -> None:
    assert check(parse(_nested(depth)), None, DEFAULT_LIMITS) is None


def test_depth_over_the_limit_fails_with_its_numbers() -> None:
    error = check(parse(_nested(14)), None, DEFAULT_LIMITS)
    assert error is not None
    assert error.message == "Query depth 14 exceeds the limit of 12."
    assert error.extensions == {"code": "QUERY_TOO_COMPLEX", "limit": "depth", "maximum": 12}


def test_depth_counts_through_fragment_spreads_and_inline_fragments() -> None:
    query = """
      query { me { ...A } }
      fragment A on User { id ... on User { ...B } }
      fragment B on User { name workspaces { nodes { ... on Workspace { slug } } } }
    """
    operation = parse(query).definitions[0]
    fragments = {d.name.value: d for d in parse(query).definitions[1:]}  # type: ignore[attr-defined]
    assert measure(operation, fragments).depth == 4  # type: ignore[arg-type]
    assert check(parse(query), None, Limits(depth=3)) is not None
    assert check(parse(query), None, Limits(depth=4)) is None


def test_fragment_cycles_end() -> None:
    query = """
      { me { ...A } }
      fragment A on User { name ...B }
      fragment B on User { workspaces { nodes { slug } } ...A }
      fragment C on User { ...C }
    """
    document = parse(query)
    assert validate(SCHEMA, document)  # invalid: the check must still end
    operation = document.definitions[0]
    fragments = {d.name.value: d for d in document.definitions[1:]}  # type: ignore[attr-defined]
    shape = measure(operation, fragments)  # type: ignore[arg-type]
    assert shape.depth == 4
    assert check(document, None, DEFAULT_LIMITS) is None


def test_a_deep_cycle_through_nested_fields_ends() -> None:
    query = """{ me { ...A } }
      fragment A on User { workspaces { nodes { members { nodes { user { ...A } } } } } }"""
    operation = parse(query).definitions[0]
    fragments = {d.name.value: d for d in parse(query).definitions[1:]}  # type: ignore[attr-defined]
    assert measure(operation, fragments).depth == 6  # type: ignore[arg-type]


def test_aliases_count_every_expansion_of_a_fragment() -> None:
    aliases = " ".join(f"a{i}: name" for i in range(5))
    spread_twice = f"{{ me {{ ...F ...F }} }} fragment F on User {{ {aliases} }}"
    assert check(parse(spread_twice), None, Limits(aliases=10)) is None
    spread_thrice = (
        f"{{ me {{ ...F ...F x: workspaces {{ nodes {{ ...G }} }} }} }}"
        f" fragment F on User {{ {aliases} }} fragment G on Workspace {{ y: slug }}"
    )
    error = check(parse(spread_thrice), None, Limits(aliases=11))
    assert error is not None
    assert error.message == "Query alias count 12 exceeds the limit of 11."
    assert _code(error) == "QUERY_TOO_COMPLEX"


def test_fragments_spreading_each_other_are_measured_without_blowing_up() -> None:
    # F0 spreads F1 twice, F1 spreads F2 twice, ...: 2**40 expansions, measured at once.
    fragments = [f"fragment F{i} on User {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40)]
    query = "{ me { ...F0 } } " + " ".join(fragments) + " fragment F40 on User { a: name }"
    error = check(parse(query), None, DEFAULT_LIMITS)
    assert error is not None and str(2**40) in error.message


def test_root_fields_counted_by_response_key() -> None:
    many = " ".join(f"m{i}: me {{ id }}" for i in range(21))
    error = check(parse(f"{{ {many} }}"), None, Limits(aliases=100))
    assert error is not None
    assert error.message == "Query root field count 21 exceeds the limit of 20."
    # The same key twice (merged by execution), and keys from a fragment, count once each.
    query = (
        "{ me { id } me { name } ...R } fragment R on Query { me { id } workspaces { totalCount } }"
    )
    assert check(parse(query), None, Limits(root_fields=2)) is None
    assert check(parse(query), None, Limits(root_fields=1)) is not None


def test_only_the_operation_that_runs_is_checked() -> None:
    query = f"query Deep {_nested(14)} query Flat {{ me {{ id }} }}"
    document = parse(query)
    assert check(document, "Flat", DEFAULT_LIMITS) is None
    assert check(document, "Deep", DEFAULT_LIMITS) is not None
    # No operation chosen among several, or an unknown name: execution reports it.
    assert check(document, None, DEFAULT_LIMITS) is None
    assert check(document, "Missing", DEFAULT_LIMITS) is None


def test_size_is_checked_before_parsing() -> None:
    query = "{ me { id } }" + " " * 20_000
    with pytest.raises(Exception) as raised:
        parse_limited(query, DEFAULT_LIMITS)
    assert raised.value.message == "Query size 20013 characters exceeds the limit of 20000."  # type: ignore[attr-defined]
    assert raised.value.extensions["code"] == "QUERY_TOO_COMPLEX"  # type: ignore[attr-defined]


def test_tokens_are_limited_while_parsing() -> None:
    query = "{ me { " + "id " * 5_000 + "} }"
    with pytest.raises(Exception) as raised:
        parse_limited(query, DEFAULT_LIMITS)
    assert raised.value.message == "Query token count exceeds the limit of 5000."  # type: ignore[attr-defined]
    assert raised.value.extensions == {  # type: ignore[attr-defined]
        "code": "QUERY_TOO_COMPLEX",
        "limit": "tokens",
        "maximum": 5000,
    }
    assert parse_limited("{ me { " + "id " * 4_000 + "} }", DEFAULT_LIMITS) is not None


def test_bad_syntax_stays_a_syntax_error() -> None:
    with pytest.raises(GraphQLSyntaxError):
        parse_limited("{ me { id }", DEFAULT_LIMITS)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "descriptions": True,
            "specified_by_url": True,
            "directive_is_repeatable": True,
            "schema_description": True,
            "input_value_deprecation": True,
        },
    ],
)
def test_graphiql_introspection_passes_the_defaults(options: dict[str, bool]) -> None:
    query = get_introspection_query(**options)
    document = parse_limited(query, DEFAULT_LIMITS)
    assert check(document, "IntrospectionQuery", DEFAULT_LIMITS) is None
    # Its `ofType` chain is 9 deep; without the exemption it would be 15.
    assert query.count("ofType") == 9


def test_introspection_that_fans_out_is_counted() -> None:
    inner = "name"
    for _ in range(6):
        inner = f"fields {{ type {{ {inner} }} }}"
    query = f"{{ __schema {{ types {{ {inner} }} }} }}"
    error = check(parse(query), None, DEFAULT_LIMITS)
    assert error is not None and error.message.startswith("Query depth 15 ")


def test_the_validation_rule_reports_the_limit() -> None:
    rule = limits_rule(DEFAULT_LIMITS)
    errors = validate(SCHEMA, parse(_nested(13)), [rule])
    assert [e.message for e in errors] == ["Query depth 13 exceeds the limit of 12."]
    assert errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
    assert validate(SCHEMA, parse(_nested(12)), [rule]) == []


def test_limits_from_settings() -> None:
    settings = Settings(
        database_url="postgresql://x/y",
        max_query_depth=5,
        max_query_aliases=6,
        max_query_root_fields=7,
        max_query_tokens=800,
        max_query_chars=900,
    )
    assert Limits.from_settings(settings) == Limits(
        chars=900, tokens=800, depth=5, aliases=6, root_fields=7
    )
    assert Limits.from_settings(Settings(database_url="postgresql://x/y")) == DEFAULT_LIMITS
