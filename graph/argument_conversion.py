"""Strawberry's argument conversion, prepared once per argument type.

The compiled read path converts each request's arguments as the resolvers receive them, so
that both paths apply the same input types and `to_db` conversions. Strawberry's own
`convert_argument` works that out anew for every value: for a task filter it took 40% of a
request's CPU (bench/README.md). `converter` does the same work once per type and returns a
function that builds the same values (tests/graph/test_argument_conversion.py compares the
two); types it does not prepare (inputs that build themselves, `Maybe`, global IDs, lazy types)
are converted by Strawberry's own function.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import StrawberryArgument, convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

from db.errors import InvalidArgument
from db.validation import storable

Convert = Callable[[Any], Any]


def converter(type_: Any, scalars: Mapping[object, Any], config: Any) -> Convert:
    """A function converting a GraphQL input value of `type_` as `convert_argument` does."""
    if isinstance(type_, StrawberryMaybe | LazyType) or type_ is GlobalID:
        return _strawberry(type_, scalars, config)
    if isinstance(type_, StrawberryOptional):
        return converter(type_.of_type, scalars, config)
    if isinstance(type_, StrawberryList):
        item_type = type_.of_type
        if _leaf(item_type, scalars) or (
            isinstance(item_type, StrawberryOptional) and _leaf(item_type.of_type, scalars)
        ):
            # Copied: graphql-core gives every request that omits it the same default list.
            return _nullable(list)
        item = converter(item_type, scalars, config)
        return _nullable(lambda values: [item(v) for v in values])
    if _leaf(type_, scalars) or has_enum_definition(type_):
        return _same
    if has_object_definition(type_):
        definition = type_.__strawberry_definition__
        if definition.from_input is not None:
            return _strawberry(type_, scalars, config)
        return _nullable(_input(type_, definition, scalars, config))
    return _strawberry(type_, scalars, config)


def arguments_converter(
    arguments: Sequence[StrawberryArgument], scalars: Mapping[object, Any], config: Any
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """`convert_arguments` for one field's arguments."""
    prepared = [
        (config.name_converter.from_argument(a), a.python_name, converter(a.type, scalars, config))
        for a in arguments
    ]

    def convert(values: Mapping[str, Any]) -> dict[str, Any]:
        return {python: conv(values[name]) for name, python, conv in prepared if name in values}

    return convert


def _input(type_: Any, definition: Any, scalars: Mapping[object, Any], config: Any) -> Convert:
    # Unset input fields without a default are None, as in `convert_argument`.
    defaults = {
        f.python_name: None
        for f in definition.fields
        if definition.is_input and f.default_value is MISSING and f.default_factory is MISSING
    }
    fields = [
        (
            config.name_converter.from_field(f),
            f.python_name,
            converter(f.resolve_type(type_definition=definition), scalars, config),
        )
        for f in definition.fields
    ]

    def build(value: Mapping[str, Any]) -> Any:
        kwargs = dict(defaults)
        for name, python, conv in fields:
            if name in value:
                kwargs[python] = conv(value[name])
        return type_(**kwargs)

    return build


def _leaf(type_: Any, scalars: Mapping[object, Any]) -> bool:
    if type_ is GlobalID:
        return False
    return is_scalar(type_, scalars) or isinstance(type_, StrawberryEnumDefinition)


def _nullable(convert: Convert) -> Convert:
    def nullable(value: Any) -> Any:
        if value is None or value is UNSET:
            return value
        return convert(value)

    return nullable


def _same(value: Any) -> Any:
    return value


def _strawberry(type_: Any, scalars: Mapping[object, Any], config: Any) -> Convert:
    return lambda value: convert_argument(value, type_, scalars, config)


# Values with no text in them: the most common arguments (page sizes, flags, nothing).
_PLAIN = frozenset({int, bool, float, type(None)})


def db_value(value: Any) -> Any:
    """A read argument as `db` takes it: inputs through their own `to_db`, enums by value, and
    only text that PostgreSQL can take (a NUL or a lone surrogate would fail in the driver: a
    server fault instead of the client's error)."""
    if type(value) in _PLAIN:
        return value
    if type(value) is str:
        _check_text(value)
        return value
    if hasattr(value, "to_db"):
        converted = value.to_db()
        _check_text(converted)
        return converted
    if isinstance(value, list):
        return [db_value(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    _check_text(value)
    return value


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if problems := storable(value, (), "Text"):
            raise InvalidArgument(problems[0].message)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item)
    elif is_dataclass(value):
        for item in fields(value):
            _check_text(getattr(value, item.name))
