"""Which fields a query asks for below a list, read from the query's syntax tree.

Lists use this to load the relationships of all their items up front, in one batch per
relationship, instead of one awaitable per item and field. Fields under `@skip`/`@include`
are counted as asked for: loading something unused is wasted work, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode


def _fields(
    selection_set: SelectionSetNode | None, fragments: dict[str, Any]
) -> Iterable[FieldNode]:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                yield from _fields(fragment.selection_set, fragments)


def item_fields(info: Any) -> set[str]:
    """Names of the fields selected on the items of the connection `info` resolves
    (under `nodes` and `edges { node }`)."""
    raw = info._raw_info
    fragments = raw.fragments
    names: set[str] = set()
    for field in raw.field_nodes:
        for child in _fields(field.selection_set, fragments):
            if child.name.value == "nodes":
                names.update(f.name.value for f in _fields(child.selection_set, fragments))
            elif child.name.value == "edges":
                for edge_field in _fields(child.selection_set, fragments):
                    if edge_field.name.value == "node":
                        names.update(
                            f.name.value for f in _fields(edge_field.selection_set, fragments)
                        )
    return names
