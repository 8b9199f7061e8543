"""The freshness companion: one query that also says how old each answer's inputs are.

Prometheus stamps instant-query results with the evaluation time, not the time of the samples
they were computed from; :func:`with_freshness` adds the samples' own time in the same round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import promql_parser

from adapter.promql.escape import render_matchers
from adapter.promql.injection import check_type, parse, selectors

__all__ = ["FRESHNESS_LABEL", "with_freshness"]

FRESHNESS_LABEL = "__lma_part"
"""Label that tells the two halves of :func:`with_freshness`'s answer apart (``value``/``ts``)."""

_SCALAR_FUNCTIONS = frozenset(
    {"scalar", "time", "pi", "minute", "hour", "day_of_month", "day_of_week", "day_of_year",
     "days_in_month", "month", "year"}
)  # fmt: skip


def _is_instant_vector(expr: object) -> bool:
    """Static type of an expression: False for scalars and strings (conservative)."""
    if isinstance(expr, promql_parser.NumberLiteral | promql_parser.StringLiteral):
        return False
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return _is_instant_vector(expr.expr)
    if isinstance(expr, promql_parser.Call):
        name = expr.func.name
        if name in _SCALAR_FUNCTIONS:
            # hour(), minute() … take an optional vector: with an argument they return a vector.
            return bool(expr.args) and name not in {"scalar", "time", "pi"}
        return True
    if isinstance(expr, promql_parser.BinaryExpr):
        return _is_instant_vector(expr.lhs) or _is_instant_vector(expr.rhs)
    return isinstance(expr, promql_parser.AggregateExpr | promql_parser.VectorSelector)


def with_freshness(query: str, *, by: Sequence[str]) -> str | None:
    """One query that answers ``query`` and, per ``by`` group, how fresh its inputs are.

    Prometheus stamps instant-query results with the evaluation time, not the time of the samples
    they were computed from. The returned query is the union of ``query`` (series labelled
    ``__lma_part="value"``) and, labelled ``__lma_part="ts"``, for each ``by`` group the *oldest*
    among the selectors of the *newest* raw sample time: ``min by (by) (max by (by)
    (timestamp(selector_i)) for each selector)``. One backend round trip; the selectors are
    rendered from the parsed query, so the scope matchers injected there apply here too.
    Returns ``None`` when the query is not an instant vector (a scalar has no labels to join).
    """
    check_type(query)
    return _with_freshness(query, tuple(by))


@functools.lru_cache(maxsize=4096)
def _with_freshness(query: str, by: tuple[str, ...]) -> str | None:
    # Every cache miss of an HPA's query builds this again: parsing is most of a miss's own CPU.
    expr = parse(query)
    if not _is_instant_vector(expr):
        return None
    infos = selectors(query)
    if not infos:
        return None
    group = f" by ({', '.join(by)})" if by else ""
    parts = []
    for index, info in enumerate(infos):
        body = render_matchers(info.matchers)
        selector = f"{info.name}{{{body}}}" if info.name else f"{{{body}}}"
        parts.append(
            f'label_replace(max{group} (timestamp({selector})), "__lma_sel", "{index}", "", "")'
        )
    freshness = f"min{group} ({' or '.join(parts)})"
    return (
        f'label_replace({query}, "{FRESHNESS_LABEL}", "value", "", "") or '
        f'label_replace({freshness}, "{FRESHNESS_LABEL}", "ts", "", "")'
    )
