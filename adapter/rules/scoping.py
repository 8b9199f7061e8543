"""What every rule does last: inject the cluster and namespace matchers into every selector.

A rule's own query may forget its namespace filter; the injected matchers still confine it to
the request's namespace and the configured cluster, because :func:`adapter.promql.inject` adds
them to every vector selector and refuses a query that pins a contradicting value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import promql_parser

from adapter import promql
from adapter.domain.errors import BadRequestError, QueryError
from adapter.domain.models import Matcher, Requirement
from adapter.rules.base import BuiltQuery, QueryScope

__all__ = [
    "EXAMPLE_CLUSTER",
    "EXAMPLE_NAMESPACE",
    "LABEL_NAME_RE",
    "METRIC_NAME_RE",
    "averages_at_top_level",
    "example_scope",
    "finish",
    "pinned_values",
    "scope_matchers",
    "selector_matchers",
    "trial_scope",
]

LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
METRIC_NAME_RE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
EXAMPLE_NAMESPACE = "NAMESPACE"
EXAMPLE_CLUSTER = "CLUSTER"


def scope_matchers(
    scope: QueryScope, namespace_label: str | None, namespace: str | None
) -> list[Matcher]:
    """``cluster_label="<cluster>"`` when a cluster is set, then ``<namespace_label>="<ns>"``
    when both a namespace label and a request namespace are given."""
    out: list[Matcher] = []
    if scope.cluster:
        out.append(Matcher(scope.cluster_label, "=", scope.cluster))
    if namespace_label is not None and namespace is not None:
        out.append(Matcher(namespace_label, "=", namespace))
    return out


def selector_matchers(requirements: Sequence[Requirement]) -> list[Matcher]:
    """The metric selector as PromQL matchers (``gt``/``lt`` raise :class:`BadRequestError`)."""
    if not requirements:
        return []
    return promql.requirements_to_matchers(list(requirements))


def finish(
    query: str,
    scope: Sequence[Matcher],
    *,
    selector: Sequence[Matcher] = (),
    object_labels: tuple[str, ...] = (),
    window: int | None = None,
) -> BuiltQuery:
    """Inject ``scope`` then ``selector`` matchers into every selector of ``query``.

    A selector matcher that contradicts the query (or the scope) is the client's doing and
    raises :class:`BadRequestError`; a scope contradiction stays a :class:`QueryError`.
    """
    scoped = promql.inject(query, list(scope)) if scope else query
    if selector:
        try:
            scoped = promql.inject(scoped, list(selector), source="the metric selector")
        except QueryError as exc:
            raise BadRequestError(f"metric selector cannot be applied: {exc.message}") from exc
    return BuiltQuery(
        query=scoped,
        object_labels=object_labels,
        window=window,
        injected=tuple(promql.render_matcher(m) for m in scope),
    )


def pinned_values(query: str, label: str) -> set[str]:
    """Values the query itself pins ``label`` to with ``=`` in any selector."""
    out: set[str] = set()
    for info in promql.selectors(query):
        for matcher in info.matchers:
            if matcher.label == label and matcher.op == "=":
                out.add(matcher.value)
    return out


def example_scope(
    query: str, *, namespace_label: str | None, cluster_label: str = "cluster"
) -> tuple[str | None, str]:
    """Placeholder (namespace, cluster) for trying or describing ``query``.

    Each is the query's own pinned value when it pins the label (a rule written for one
    namespace or cluster still loads), else ``NAMESPACE`` / ``CLUSTER``. The namespace is
    ``None`` when ``namespace_label`` is.
    """
    cluster = min(pinned_values(query, cluster_label), default=EXAMPLE_CLUSTER)
    if namespace_label is None:
        return None, cluster
    return min(pinned_values(query, namespace_label), default=EXAMPLE_NAMESPACE), cluster


def trial_scope(query: str, *, namespace_label: str | None, cluster_label: str) -> None:
    """Inject placeholder scope matchers once, so a query that cannot be scoped fails at load.

    Placeholders come from :func:`example_scope`. Raises :class:`QueryError`.
    """
    if not promql.selectors(query):
        raise QueryError("the query selects no series, so it cannot be scoped")
    ns, cluster = example_scope(query, namespace_label=namespace_label, cluster_label=cluster_label)
    matchers = [Matcher(cluster_label, "=", cluster)]
    if namespace_label is not None and ns is not None:
        matchers.append(Matcher(namespace_label, "=", ns))
    promql.inject(query, matchers)


_TRANSPARENT_AGGREGATIONS = frozenset({"avg"})


def _averages(node: object) -> bool:
    if isinstance(node, promql_parser.AggregateExpr):
        # Any other aggregation (sum, max, count...) decides what the HPA sees; stop there.
        return str(node.op) in _TRANSPARENT_AGGREGATIONS
    if isinstance(node, promql_parser.Call):
        name = str(node.func.name)
        if name == "avg_over_time":
            return True
        if name.endswith("_over_time"):
            return False
        return any(_averages(arg) for arg in node.args)
    if isinstance(node, promql_parser.BinaryExpr):
        return _averages(node.lhs) or _averages(node.rhs)
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr)):
        return _averages(node.expr)
    return False


def averages_at_top_level(query: str) -> bool:
    """Whether the value the query returns is an average: ``avg(...)``, ``avg by``, or
    ``avg_over_time`` outermost, or as an operand of a top-level arithmetic expression.

    An average nested inside another aggregation (``sum(avg by (pod) (x))``) is not one: the
    outer aggregation decides. Unparseable queries return ``False`` (validation reports them).
    """
    try:
        expr = promql_parser.parse(query)
    except Exception:  # the parser raises several types; validate() reports them
        return False
    return _averages(expr)
