"""One statement that answers a whole read query, with PostgreSQL building the `data` JSON.

The caller (graph/compiled.py) turns a query document into `Pick`s: for each response key, the
field of the type's description (`db.descriptions`) and the picks below it per runtime type.
The values of the fields' arguments come per request, by site (`args[site]`): `bind` says
what of them changes the statement (its shape) and which parameters they give, so that the
statement is built with `build` and compiled once per shape (`db.prepared.compile_shape`) and run
with each request's parameters.

The answers are the resolvers' answers, value for value and key for key: the rows, order,
cursors, page info and visibility come from the same descriptions, sort keys and filters;
`NotCompiled` sends a request whose answer would be an error to the resolvers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    Text,
    bindparam,
    case,
    cast,
    false,
    func,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.sql.util import ClauseAdapter

from db import wire
from db.descriptions import (
    ById,
    ListArgs,
    Listing,
    Many,
    NodeType,
    One,
    Value,
    listed_rows,
    related_rows,
)
from db.errors import InvalidArgument
from db.pagination import SortKey, after_condition, ordering, plan_page
from db.principals import PRINCIPAL_PARAMS, PrincipalSQL, viewer_sql
from db.wire import Sql, sql_string

# json_build_object takes at most 100 arguments.
MAX_KEYS = 50


# Written in place of a value the principal may not read: the request then goes to the
# resolvers, which answer with the error. No data can produce this text: a quote right after a
# brace is escaped inside JSON strings, and response keys are GraphQL names (no hyphen).
REFUSED = literal_column("""'{"tg-refused": true}'::json""")
REFUSED_TEXT = '{"tg-refused": true}'


class NotCompiled(Exception):
    """The resolvers answer this request (its answer is an error, or a shape not compiled)."""


@dataclass(frozen=True, slots=True)
class Pick:
    key: str
    # The field's name in its type's description; "__typename" for the type's name.
    name: str
    # Where the request's values of the field's arguments are (`args[site]`).
    site: int | None = None
    # The picks below the field, per runtime type; None where that type is not compiled.
    children: Mapping[str, Sequence[Pick] | None] = field(default_factory=dict)


def _prefix(site: int) -> str:
    return f"a{site}_"


def bind(described: Any, args: Any, site: int) -> tuple[Hashable, dict[str, Any]]:
    """What of a field's arguments changes the statement, and the parameters they give."""
    prefix = _prefix(site)
    try:
        if isinstance(described, Listing):
            page = _page(described, args)
            shape: Hashable = (page.shape, described.arguments.shape(args.rest))
            params = dict(zip(page.names(prefix), page.values, strict=True))
            params[f"{prefix}size"] = page.size
            extra = described.arguments.params(args.rest)
        elif isinstance(described, ById):
            if described.many:
                # Branches only for the types the ids name.
                return tuple(sorted({t for t, _ in args})), {
                    f"{prefix}types": [t for t, _ in args],
                    f"{prefix}ids": [i for _, i in args],
                }
            return args[0], {f"{prefix}id": args[1]}
        else:
            arguments = described.arguments
            if arguments is None:
                return None, {}
            shape, params, extra = arguments.shape(args), {}, arguments.params(args)
    except InvalidArgument:
        raise NotCompiled from None
    params.update((prefix + name, value) for name, value in extra.items())
    return shape, params


# The LIMITs of pages: the common page sizes (10, 20, 25, 50, 100) and one more row.
_LIMITS = (2, 3, 6, 11, 21, 26, 51, 101)


@dataclass(frozen=True, slots=True)
class _Page:
    keys: Sequence[SortKey]
    size: int
    backwards: bool
    walk: Sequence[SortKey]
    values: Sequence[Any]
    started: bool

    @property
    def limit(self) -> int:
        """The statement's LIMIT: the page and one row more (whether another page follows),
        rounded up to one of a few sizes. A LIMIT written into the statement lets PostgreSQL
        keep a generic plan (with a parameter there, its estimate of one assumed a tenth of
        the rows, so it planned every execution afresh: 0.4 ms of planning for 0.3 of
        execution on the backward op, bench/README.md step 25); rounded, a document's page
        sizes make a few statements, not one per size (nested lists would multiply them).
        The exact size stays a parameter: the rows past it are only counted."""
        wanted = self.size + 1
        return next((n for n in _LIMITS if n >= wanted), wanted)

    @property
    def shape(self) -> Hashable:
        walk = tuple(k.name for k in self.walk)
        return (self.size == 0, self.limit, self.backwards, self.started, walk)

    def names(self, prefix: str) -> list[str]:
        return [f"{prefix}c{i}" for i in range(len(self.values))]


def _page(described: Listing, args: ListArgs) -> _Page:
    keys = described.keys(args.rest)
    size, backwards, walk, values = plan_page(keys, args.page)
    return _Page(keys, size, backwards, walk, values or [], values is not None)


class _Builder:
    def __init__(self, types: Mapping[str, NodeType], args: Sequence[Any], viewer: bool) -> None:
        self.types = types
        self.args = args
        self.principal: PrincipalSQL = viewer_sql() if viewer else PRINCIPAL_PARAMS

    def param(self, site: int | None) -> Any:
        prefix = _prefix(site) if site is not None else ""

        def make(name: str, type_: Any) -> Any:
            return bindparam(prefix + name, type_=type_)

        return make

    def object(self, type_name: str, picks: Sequence[Pick] | None, c: Any, row: Any) -> Sql:
        """The JSON object of one row (`c` its columns, `row` the FROM it comes from)."""
        if picks is None:
            raise NotCompiled
        if len(picks) > MAX_KEYS:
            raise NotCompiled
        node = self.types[type_name]
        parts: list[Any] = []
        for pick in picks:
            parts.append(sql_string(pick.key))
            if pick.name == "__typename":
                parts.append(sql_string(type_name))
                continue
            described = node.fields.get(pick.name)
            if described is None:
                raise NotCompiled
            parts.append(self.field(described, pick, c, row))
        return func.json_build_object(*parts)

    def field(self, described: Any, pick: Pick, c: Any, row: Any) -> Sql:
        p = self.principal
        args = self.args[pick.site] if pick.site is not None else None
        if isinstance(described, Value):
            return described.json(c, p)
        if isinstance(described, ById):
            return self.by_id(described, pick)
        rows = self.rows(described, c, args, self.param(pick.site))
        if row is not None:
            rows = rows.correlate(row)
        if isinstance(described, One):
            x = rows.subquery()
            target = self._only(pick)
            return (
                select(self.object(target, pick.children[target], x.c, x))
                .select_from(x)
                .limit(literal_column("1"))
                .scalar_subquery()
            )
        if isinstance(described, Many):
            x = rows.subquery()
            target = self._only(pick)
            item = self.object(target, pick.children[target], x.c, x)
            ordered = func.json_agg(aggregate_order_by(item, *described.order(x.c)))
            listed = (
                select(func.coalesce(ordered, literal_column("'[]'"))).select_from(x)
            ).scalar_subquery()
            if described.refused is None:
                return listed
            return case((described.refused(c, p), REFUSED), else_=listed)
        assert isinstance(described, Listing)
        return self.connection(described, pick, rows, args)

    def rows(self, described: One | Many | Listing, c: Any, args: Any, param: Any) -> Select[Any]:
        """The rows of a relationship or list for the parent row `c`."""
        target = self.types[described.target]
        if isinstance(described, Listing):
            rows = listed_rows(described, target, self.principal, args, param)
            if described.parent is None:
                return rows
            return rows.where(described.parent(rows.selected_columns) == c.id)
        return related_rows(described, target, c, self.principal, args, param)

    @staticmethod
    def _only(pick: Pick) -> str:
        (target,) = pick.children
        return target

    def connection(self, described: Listing, pick: Pick, rows: Select[Any], args: Any) -> Sql:
        page = _page(described, args)
        param = self.param(pick.site)
        whole = rows.subquery()
        walk = _over(whole, page.walk)
        limited = select(whole).order_by(*ordering(walk))
        if page.started:
            marks = [
                param(f"c{i}", k.expr.type)
                for i, k in enumerate(page.keys)  # the cursor holds the list's own keys' values
            ]
            limited = limited.where(after_condition(walk, marks))
        if page.size == 0:
            limited = limited.where(false())
        size = param("size", Integer)
        limited_sq = limited.limit(literal_column(str(int(page.limit)))).subquery()
        numbered = func.row_number().over(order_by=ordering(_over(limited_sq, page.walk)))
        x = select(limited_sq, numbered.label("tg_rn")).subquery()
        rn = x.c.tg_rn
        in_page = rn <= size
        # The rows in the list's order: walked backwards, the page is reversed.
        listed = rn.desc() if page.backwards else rn.asc()
        keys_x = [k.expr for k in _over(x, page.keys)]
        (connection_type,) = pick.children
        parts: list[Any] = []
        for item in pick.children[connection_type] or ():
            parts.append(sql_string(item.key))
            if item.name == "__typename":
                parts.append(sql_string(connection_type))
            elif item.name == "totalCount":
                counted = rows.subquery()
                parts.append(select(func.count()).select_from(counted).scalar_subquery())
            elif item.name == "nodes":
                target = self._only(item)
                node = self.object(target, item.children[target], x.c, x)
                parts.append(_aggregate(node, listed, in_page))
            elif item.name == "edges":
                edge_type = self._only(item)
                edge_parts: list[Any] = []
                for edge_field in item.children[edge_type] or ():
                    edge_parts.append(sql_string(edge_field.key))
                    if edge_field.name == "__typename":
                        edge_parts.append(sql_string(edge_type))
                    elif edge_field.name == "cursor":
                        edge_parts.append(wire.cursor_sql(page.keys, keys_x))
                    else:
                        target = self._only(edge_field)
                        edge_parts.append(self.object(target, edge_field.children[target], x.c, x))
                parts.append(_aggregate(func.json_build_object(*edge_parts), listed, in_page))
            elif item.name == "pageInfo":
                parts.append(self.page_info(item, page, keys_x, rn, size, in_page))
            else:
                raise NotCompiled
        # Grouped, so that there is one row (and one object) even when nothing is aggregated.
        return (
            select(func.json_build_object(*parts))
            .select_from(x)
            .group_by(literal_column("()"))
            .scalar_subquery()
        )

    def page_info(
        self, pick: Pick, page: _Page, keys_x: list[Sql], rn: Sql, size: Sql, in_page: Sql
    ) -> Sql:
        more = func.count() > size if page.size else false()
        started = true() if page.started else false()
        has_next, has_previous = (started, more) if page.backwards else (more, started)
        (info_type,) = pick.children
        parts: list[Any] = []
        for item in pick.children[info_type] or ():
            parts.append(sql_string(item.key))
            name = item.name
            if name == "__typename":
                parts.append(sql_string(info_type))
            elif name == "hasNextPage":
                parts.append(has_next)
            elif name == "hasPreviousPage":
                parts.append(has_previous)
            elif name in ("startCursor", "endCursor"):
                # The cursor of one row, from its sort-key values: not one per row.
                # The first row in the list's order, or the last.
                descending = page.backwards == (name == "startCursor")
                first = rn.desc() if descending else rn.asc()
                picked = [
                    func.array_agg(aggregate_order_by(k, first)).filter(in_page)[1] for k in keys_x
                ]
                filled = (func.count() > 0) & (page.size > 0)
                parts.append(case((filled, wire.cursor_sql(page.keys, picked)), else_=null()))
            else:
                raise NotCompiled
        return func.json_build_object(*parts)

    def by_id(self, described: ById, pick: Pick) -> Sql:
        assert pick.site is not None
        args = self.args[pick.site]
        param = self.param(pick.site)
        if not described.many:
            type_name = args[0]
            return self.node(type_name, pick.children.get(type_name), param("id", BigInteger))
        if not args:
            return literal_column("'[]'::json")
        pairs = (
            func.unnest(param("types", ARRAY(Text)), param("ids", ARRAY(BigInteger)))
            .table_valued("type_name", "id", with_ordinality="n")
            .render_derived()
        )
        named = {t for t, _ in args}
        branches = [
            (pairs.c.type_name == sql_string(type_name), self.node(type_name, picks, pairs.c.id))
            for type_name, picks in pick.children.items()
            if type_name in named
        ]
        item = case(*branches, else_=null()) if branches else null()
        return (
            select(
                func.coalesce(
                    func.json_agg(aggregate_order_by(item, pairs.c.n)), literal_column("'[]'")
                )
            )
            .select_from(pairs)
            .scalar_subquery()
        )

    def node(self, type_name: str, picks: Sequence[Pick] | None, db_id: Sql) -> Sql:
        node = self.types.get(type_name)
        if node is None or node.source is None or picks is None:
            raise NotCompiled
        x = node.source().subquery()
        where = [x.c.id == db_id]
        if node.visible is not None:
            where.append(node.visible(x.c, self.principal))
        return (
            select(self.object(type_name, picks, x.c, x))
            .select_from(x)
            .where(*where)
            .scalar_subquery()
        )


def _aggregate(item: Sql, listed: Any, in_page: Sql) -> Sql:
    return func.coalesce(
        func.json_agg(aggregate_order_by(item, listed)).filter(in_page), literal_column("'[]'")
    )


def _over(rows: Any, keys: Sequence[SortKey]) -> list[SortKey]:
    """The sort keys, written over the columns of `rows` (a subquery of the list's rows)."""
    adapt = ClauseAdapter(rows)
    return [SortKey(k.name, adapt.traverse(k.expr), k.kind, k.descending) for k in keys]


def build(
    types: Mapping[str, NodeType],
    root: str,
    picks: Sequence[Pick],
    args: Sequence[Any],
    viewer: bool,
) -> Select[Any]:
    """The statement of one shape: its single value is the `data` object as text, or NULL when
    a signed-in `viewer` no longer exists (the resolvers then answer)."""
    builder = _Builder(types, args, viewer)
    data = cast(builder.object(root, picks, None, None), Text)
    if viewer:
        exists = builder.principal.exists
        return select(case((exists, data), else_=null()))
    return select(data)
