"""Completing lists of objects without graphql-core's per-field machinery.

Profiles of the board and the partner export (bench/README.md) put most of a request in
graphql-core completing list items: for every item and every selected field it builds a
resolve-info object and a path, calls the resolver through Strawberry's wrappers, checks for
awaitables and completes the value through the generic `complete_value`. A page of 100 tasks
with six fields is 600 such rounds.

When a list's items are objects whose selection (after graphql-core has collected it, with
aliases, fragments and `@skip`/`@include` applied) holds only fields without arguments, this
module compiles that selection once per request into a plan and completes every item with it:
plain attributes are read directly, other resolvers are called with one resolve-info per field
rather than one per item, leaves are coerced with the type's own `coerce_output_value`, and
nested objects and lists of objects recurse. The response is the same as the normal path's,
key for key and in the same order.

Anything the plan does not cover goes to graphql-core as before: a resolver that raises or
returns an awaitable, a null in a non-null position, an abstract type, a field with arguments,
`is_type_of` refusing an item, deferred fragments, middleware. When that happens part-way through a
list, the whole list is completed again by graphql-core, so errors, paths and null
propagation are graphql-core's own. Resolvers that may be called twice this way are the
synchronous, side-effect-free field resolvers of the read types (see graph/types).
"""

from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# Switch for the equivalence tests, which run the same queries with and without plans.
ENABLED = True


class _Fallback(Exception):
    """The plan cannot complete this value; graphql-core completes the whole list instead."""


# (response key, value of the field on a source object, completion of that value)
Step = tuple[str, Callable[[Any], Any], Callable[[Any], Any]]


class FastListExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[tuple[int, int], Callable[[Any], Any] | None] = {}
        # Strawberry always passes a manager, usually without any middleware in it.
        manager = self.middleware_manager
        self._no_middleware = manager is None or not manager.middlewares

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        if ENABLED and self._no_middleware and isinstance(items, list):
            complete_item = self._plan(item_type, field_details_list, path)
            if complete_item is not None:
                try:
                    return [complete_item(item) for item in items]
                except Exception:  # noqa: S110 - graphql-core reports it below
                    pass
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )

    # Plans are keyed like graphql-core's own subfield cache: by the identity of the field
    # details list, which it keeps alive for the whole execution.
    def _plan(
        self, item_type: GraphQLOutputType, field_details_list: FieldDetailsList, path: Path
    ) -> Callable[[Any], Any] | None:
        key = (id(item_type), id(field_details_list))
        if key in self._plans:
            return self._plans[key]
        try:
            plan = self._value_plan(item_type, field_details_list, path)
        except _Fallback:
            plan = None
        self._plans[key] = plan
        return plan

    def _value_plan(
        self, return_type: GraphQLOutputType, field_details_list: FieldDetailsList, path: Path
    ) -> Callable[[Any], Any]:
        if is_non_null_type(return_type):
            inner = self._value_plan(
                return_type.of_type,  # type: ignore[attr-defined]
                field_details_list,
                path,
            )

            def non_null(value: Any) -> Any:
                completed = inner(value)
                if completed is None:
                    raise _Fallback
                return completed

            return non_null
        if is_leaf_type(return_type):
            return _leaf_plan(return_type)
        if is_list_type(return_type):
            item = self._value_plan(
                return_type.of_type,  # type: ignore[attr-defined]
                field_details_list,
                path,
            )

            def list_(value: Any) -> Any:
                if value is None:
                    return None
                if not isinstance(value, list):
                    raise _Fallback
                return [item(v) for v in value]

            return list_
        if is_object_type(return_type):
            return self._object_plan(return_type, field_details_list, path)  # type: ignore[arg-type]
        raise _Fallback  # interfaces and unions

    def _object_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList, path: Path
    ) -> Callable[[Any], Any]:
        # Strawberry's `is_type_of` (types that implement interfaces) is an isinstance check
        # that does not read its info argument.
        is_type_of = object_type.is_type_of
        grouped, new_defer_usages, _forbidden = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages:
            raise _Fallback
        # Refuse before building anything: a plan for a selection with arguments is never used.
        fields = []
        for response_key, details in grouped.items():
            node = details[0].node
            field_def = self.schema.get_field(object_type, node.name.value)
            if node.arguments or (field_def is not None and field_def.args):
                raise _Fallback
            fields.append((response_key, details, node.name.value, field_def))
        steps: list[Step] = []
        for response_key, details, name, field_def in fields:
            if name == "__typename":
                type_name = object_type.name
                steps.append((response_key, lambda _source, n=type_name: n, _same))
                continue
            if field_def is None:
                continue
            getter = self._getter(field_def, details, object_type, path)
            complete = self._value_plan(field_def.type, details, path)
            steps.append((response_key, getter, complete))

        def complete_object(source: Any) -> Any:
            if source is None:
                return None
            if is_type_of is not None and is_type_of(source, None) is not True:
                raise _Fallback
            return {key: complete(get(source)) for key, get, complete in steps}

        return complete_object

    def _getter(
        self,
        field_def: Any,
        details: FieldDetailsList,
        object_type: GraphQLObjectType,
        path: Path,
    ) -> Callable[[Any], Any]:
        strawberry_field = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        resolve = field_def.resolve
        if (
            strawberry_field is not None
            and getattr(resolve, "_is_default", False)
            and strawberry_field.base_resolver is None
            and strawberry_field.default_resolver is getattr
        ):
            attribute = strawberry_field.python_name

            def read(source: Any) -> Any:
                return getattr(source, attribute)

            return read
        # One resolve-info for every item, built on first use: resolvers on this path do not
        # read `info.path` (errors, which carry paths, come from graphql-core's completion).
        infos: list[Any] = []

        def info_once() -> Any:
            if not infos:
                raw_info = self.build_resolve_info(
                    field_def, [d.node for d in details], object_type, path.add_key(0, None)
                )
                if direct is None:
                    infos.append(raw_info)
                else:
                    info_class = self.schema._strawberry_schema.config.info_class  # type: ignore[attr-defined]
                    infos.append(info_class(_raw_info=raw_info, _field=strawberry_field))
            return infos[0]

        direct = _direct_method(strawberry_field, self.schema)
        if direct is not None:
            method, wants_info = direct
            if not wants_info:

                def call_method(source: Any) -> Any:
                    return _settled(method(source))

                return call_method

            def call_method_with_info(source: Any) -> Any:
                return _settled(method(source, info=info_once()))

            return call_method_with_info
        call_resolver = resolve if resolve is not None else self.field_resolver

        def call(source: Any) -> Any:
            return _settled(call_resolver(source, info_once()))

        return call


def _same(value: Any) -> Any:
    return value


# Values that graphql-core's built-in scalars return unchanged (Int and Float also check the
# range): the common case is answered without the coercion call.
_AS_IS: dict[Any, type] = {
    GraphQLString: str,
    GraphQLID: str,
    GraphQLBoolean: bool,
    GraphQLInt: int,
    GraphQLFloat: float,
}
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _leaf_plan(return_type: Any) -> Callable[[Any], Any]:
    coerce = return_type.coerce_output_value
    kind = next((k for t, k in _AS_IS.items() if t is return_type), None)
    wrapped = getattr(return_type, "wrapped_cls", None)
    # Strawberry's enum type answers a member with the name of the first value equal to it.
    names: dict[Any, str] = {}
    if isinstance(wrapped, type) and issubclass(wrapped, enum.Enum):
        for member in wrapped:
            for name, value in return_type.values.items():
                if member.value == value.value:
                    names[member] = name
                    break

    def leaf(value: Any) -> Any:
        if value is None:
            return None
        cls = type(value)
        if cls is kind and (
            (cls is not int or _INT_MIN <= value <= _INT_MAX)
            and (cls is not float or math.isfinite(value))
        ):
            return value
        if cls is wrapped and value in names:
            return names[value]
        if isinstance(value, Exception):
            raise _Fallback
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Fallback
        return coerced

    return leaf


_PLAIN = frozenset({str, int, float, bool, type(None), list, dict})


def _settled(result: Any) -> Any:
    """A resolver's value, or a fallback when it has to be awaited."""
    if type(result) in _PLAIN:
        return result
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise _Fallback
    return result


_DIRECT: dict[Any, tuple[Callable[..., Any], bool] | None] = {}


def _direct_method(strawberry_field: Any, schema: Any) -> tuple[Callable[..., Any], bool] | None:
    """The plain method behind a field, and whether it takes `info`, when Strawberry's
    resolver wrappers would add nothing to calling it: a synchronous method of the type
    without arguments, field extensions, permission classes or exception handlers."""
    if strawberry_field is None:
        return None
    if strawberry_field in _DIRECT:
        return _DIRECT[strawberry_field]
    found = None
    resolver = strawberry_field.base_resolver
    strawberry_schema = getattr(schema, "_strawberry_schema", None)
    if (
        resolver is not None
        and strawberry_schema is not None
        and not strawberry_schema.schema_converter._exception_handler_specs
        and not resolver.is_async
        and not resolver.arguments
        and not strawberry_field.extensions
        and not strawberry_field.permission_classes
        and resolver.self_parameter is not None
        and resolver.root_parameter is None
        and resolver.parent_parameter is None
    ):
        names = list(resolver.signature.parameters)
        info = resolver.info_parameter
        if names == [resolver.self_parameter.name] + ([info.name] if info is not None else []):
            found = (resolver.wrapped_func, info is not None)
    _DIRECT[strawberry_field] = found
    return found
