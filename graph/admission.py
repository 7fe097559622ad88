"""What a request must pass before its operation runs, on either read path: the document's
limits (graph/query_limits.py), its calculated cost (graph/query_cost.py) and the principal's
budget (graph/rate_limits.py). None of it touches the database.

A document's limits and cost plan are worked out once per (text, operation name) and kept;
a request then evaluates the plan with its variables (`first`/`last`) and takes the cost from
its principal's bucket. Every answer to an operation carries `extensions.cost`, as Shopify's
API does, so that a client can pace itself.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
)

from graph.document_rules import chosen_operation
from graph.query_cost import CostPlan, check_cost, cost_extension
from graph.query_limits import Limits, check, check_text, parse_limited
from graph.rate_limits import Limiters, throttled_error

log = logging.getLogger(__name__)

MAX_DOCUMENTS = 1000


@dataclass(frozen=True, slots=True)
class Checked:
    """A document's standing: the limit it breaks, or how its cost follows from variables.
    No plan when it does not parse: the schema's execution reports that (at cost 0)."""

    error: GraphQLError | None
    plan: CostPlan | None
    # The operation that would run: its name and type ("query", "mutation", ...).
    operation: tuple[str | None, str] | None = None
    # The document parsed, for the compiler to take instead of parsing it again: given to the
    # request that parsed it only, never kept here (a document's tree can weigh a hundred
    # times its text).
    document: DocumentNode | None = None


@dataclass(slots=True)
class Admitted:
    """The outcome for one request: the refusal, if any, and the `extensions` to answer with."""

    error: GraphQLError | None
    extensions: dict[str, Any]


class Admission:
    def __init__(
        self, schema: GraphQLSchema, limits: Limits, max_cost: int, limiters: Limiters
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.max_cost = max_cost
        self.limiters = limiters
        self.checked: OrderedDict[tuple[str, str | None], Checked] = OrderedDict()

    def check(self, query: str, operation_name: str | None) -> Checked:
        key = (query, operation_name)
        found = self.checked.get(key)
        if found is not None:
            self.checked.move_to_end(key)
            return found
        found = self._check(query, operation_name)
        self.checked[key] = replace(found, document=None) if found.document else found
        if len(self.checked) > MAX_DOCUMENTS:
            self.checked.popitem(last=False)
        return found

    def _check(self, query: str, operation_name: str | None) -> Checked:
        error = check_text(query, self.limits)
        if error is not None:
            return Checked(error, None)
        try:
            document: DocumentNode = parse_limited(query, self.limits)
        except GraphQLSyntaxError:
            return Checked(None, None)
        except GraphQLError as error:
            return Checked(error, None)  # too many tokens
        operation = _operation(document, operation_name)
        error = check(document, operation_name, self.limits)
        if error is not None:
            return Checked(error, None, operation)
        plan = CostPlan.for_document(self.schema, document, operation_name)
        return Checked(None, plan, operation, document)

    async def admit(
        self, checked: Checked, variables: Mapping[str, Any] | None, bucket: str
    ) -> Admitted:
        if checked.error is not None:
            return Admitted(checked.error, {})
        if checked.plan is None:
            return Admitted(None, {})
        cost = checked.plan.cost(variables)
        error = check_cost(cost, self.max_cost)
        if error is not None:
            return Admitted(error, cost_extension(cost))
        if not self.limiters.enabled:
            return Admitted(None, cost_extension(cost))
        throttle = await self.limiters.cost.take(bucket, cost)
        if not throttle.allowed:
            return Admitted(throttled_error(cost, throttle), cost_extension(cost, throttle))
        return Admitted(None, cost_extension(cost, throttle))


def _operation(document: DocumentNode, name: str | None) -> tuple[str | None, str] | None:
    chosen = chosen_operation(document, name)
    if chosen is None:
        return None
    return (chosen.name.value if chosen.name else None), chosen.operation.value
