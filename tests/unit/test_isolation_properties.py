"""Isolation, by property: no rule, query shape, namespace, cluster or metric selector lets an
answer contain data from another namespace or cluster, and no value changes a query's structure.

Queries are built through the real rules (native and prometheus-adapter) and
:func:`adapter.promql.inject`, then evaluated on :class:`FakeBackend` holding series from
several (cluster, namespace) origins whose values encode their origin. The central check is
differential: the scoped query over *every* origin's series must answer exactly what it answers
over the requested origin's series alone. For shapes the fake cannot evaluate (``rate``, other
functions), each selector of the final query is evaluated alone and must select only the
requested origin.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapter import promql
from adapter.domain.errors import BackendResponseError, BadRequestError, QueryError
from adapter.domain.models import Requirement
from adapter.rules.base import MetricRequest, QueryScope, Rule, ServedMetric
from adapter.rules.native import compile_native
from adapter.rules.prometheus_adapter import compile_discovery_rule
from sim.fake_backend import FakeBackend

METRICS = ("m_backlog", "m_slots")
PODS = ("p0", "p1")
EXAMPLES = 800  # per test; three tests: 2400 cases

# Label values a client may send: quotes, backslashes, braces, regex syntax, unicode.
nasty_text = st.text(
    alphabet=st.sampled_from(list('ab"\\{}[]()|.*+?^$,=!~ \n\té世🙂')), min_size=0, max_size=8
)
names = st.text(alphabet="abcxyz-0", min_size=1, max_size=6)


@dataclass(frozen=True)
class World:
    origins: tuple[tuple[str, str], ...]  # (cluster, namespace)
    kinds: tuple[str, ...]

    def series(self, only: tuple[str, str] | None = None) -> list[tuple[dict[str, str], float]]:
        out: list[tuple[dict[str, str], float]] = []
        for o, (cluster, namespace) in enumerate(self.origins):
            if only is not None and (cluster, namespace) != only:
                continue
            for m, metric in enumerate(METRICS):
                for p, pod in enumerate(PODS):
                    for k, kind in enumerate(self.kinds):
                        labels = {
                            "__name__": metric,
                            "cluster": cluster,
                            "namespace": namespace,
                            "pod": pod,
                            "kind": kind,
                        }
                        # The value encodes the origin: any leaked sample changes a sum.
                        value = (o + 1) * 1000.0 + m * 100 + p * 10 + k + 0.5
                        out.append((labels, value))
        return out


@st.composite
def worlds(draw: st.DrawFn) -> World:
    # A cluster name is never empty: an empty --cluster means "not scoped to a cluster".
    clusters = draw(st.lists(nasty_text.filter(bool), min_size=1, max_size=3, unique=True))
    namespaces = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    origins = tuple((c, n) for c in clusters for n in namespaces)
    kinds = tuple(draw(st.lists(nasty_text, min_size=1, max_size=2, unique=True)))
    return World(origins=origins, kinds=kinds)


def selector(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(METRICS))
    extra = draw(
        st.sampled_from(["", "{}", '{pod!=""}', '{pod=~"p.*"}', '{kind!="zzz"}', '{pod="p1"}'])
    )
    return name + extra


@st.composite
def evaluable_queries(draw: st.DrawFn, depth: int = 0) -> str:
    """What FakeBackend evaluates: selectors, aggregations, arithmetic."""
    choice = draw(st.integers(0, 5 if depth < 2 else 1))
    if choice <= 1:
        return selector(draw)
    if choice == 2:
        agg = draw(st.sampled_from(["sum", "avg", "max", "min", "count"]))
        by = draw(st.sampled_from(["", " by (pod)", " by (kind)", " without (pod)"]))
        return f"{agg}{by} ({draw(evaluable_queries(depth + 1))})"
    if choice == 3:
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({draw(evaluable_queries(depth + 1))}) {op} {draw(st.integers(1, 9))}"
    if choice == 4:
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        left = f"sum by (pod) ({selector(draw)})"
        right = f"sum by (pod) ({selector(draw)})"
        return f"{left} {op} {right}"
    return f"-({draw(evaluable_queries(depth + 1))})"


@st.composite
def function_queries(draw: st.DrawFn) -> str:
    """Shapes FakeBackend does not evaluate: range functions and other calls."""
    sel = selector(draw)
    window = draw(st.sampled_from(["1m", "5m", "30s"]))
    return draw(
        st.sampled_from(
            [
                f"rate({sel}[{window}])",
                f"sum by (pod) (rate({sel}[{window}]))",
                f"avg(max_over_time({sel}[{window}]))",
                f"abs({sel})",
                f"clamp_min({sel}, 0) + on(pod) group_left {METRICS[0]}",
                f"sum(increase({sel}[{window}])) / sum(rate({METRICS[1]}[{window}]))",
                f"histogram_quantile(0.9, sum by (le) (rate({sel}[{window}])))",
            ]
        )
    )


@st.composite
def requirements(draw: st.DrawFn) -> tuple[Requirement, ...]:
    out: list[Requirement] = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(["kind", "pod", "namespace", "cluster"]))
        op = draw(st.sampled_from(["=", "!=", "in", "notin", "exists"]))
        if op in ("=", "!="):
            values: tuple[str, ...] = (draw(nasty_text),)
        elif op in ("in", "notin"):
            values = tuple(sorted(set(draw(st.lists(nasty_text, min_size=1, max_size=3)))))
        else:
            values = ()
        out.append(Requirement(key=key, op=op, values=values))  # type: ignore[arg-type]
    return tuple(out)


PA_TEMPLATES = (
    "sum(<<.Series>>{<<.LabelMatchers>>})",
    "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    'avg(<<.Series>>{<<.LabelMatchers>>,kind!="zzz"})',
    "<<.Series>>{<<.LabelMatchers>>} * 2",
    "sum(<<.Series>>{<<.LabelMatchers>>}) / count(<<.Series>>{<<.LabelMatchers>>})",
    "max(<<.Series>>{<<.LabelMatchers>>}) - min(" + METRICS[1] + ")",
    "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]))",
)


def native_rule(query: str) -> Rule:
    raw = {"name": "probe", "type": "external", "query": query}
    return compile_native(raw, index=0, file="prop.yaml", rule_id="prop", source="native")


def pa_rule(template: str) -> tuple[Rule, ServedMetric]:
    raw = {
        "seriesQuery": f'{METRICS[0]}{{namespace!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
        "metricsQuery": template,
    }
    rule = compile_discovery_rule(
        raw, kind="external", file="prop.yaml", rule="externalRules[0]", rule_id="prop"
    )
    served = rule.discovered_metrics({METRICS[0]: ["namespace", "pod", "cluster", "kind"]})
    assert len(served) == 1
    return rule, served[0]


def build(
    rule: Rule, metric: ServedMetric, origin: tuple[str, str], reqs: tuple[Requirement, ...]
) -> str | None:
    """The final query, or ``None`` when the request is refused (a refusal leaks nothing)."""
    cluster, namespace = origin
    request = MetricRequest(namespace=namespace, metric_selector=reqs)
    try:
        return rule.build_query(metric, request, QueryScope(cluster=cluster)).query
    except (BadRequestError, QueryError):
        event("refused")
        return None


def check_structure(original: str, built: str, origin: tuple[str, str]) -> None:
    """Same selectors (count, names); each only gained matchers, including the scope."""
    before = promql.selectors(original)
    after = promql.selectors(built)
    assert [s.name for s in after] == [s.name for s in before]
    cluster, namespace = origin
    for b, a in zip(before, after, strict=True):
        assert a.matchers[: len(b.matchers)] == b.matchers
        pinned = {(m.label, m.value) for m in a.matchers if m.op == "="}
        assert ("cluster", cluster) in pinned
        assert ("namespace", namespace) in pinned


def run(backend: FakeBackend, query: str) -> set[tuple[tuple[tuple[str, str], ...], float]] | None:
    try:
        result = asyncio.run(backend.query(query, timeout=5))
    except BackendResponseError:
        return None  # a shape the fake does not evaluate
    return {(tuple(sorted(s.labels.items())), s.value) for s in result.samples}


def assert_isolated(world: World, origin: tuple[str, str], built: str) -> None:
    everything, alone = FakeBackend(), FakeBackend()
    everything.set_series(world.series())
    alone.set_series(world.series(only=origin))
    got = run(everything, built)
    if got is not None:
        event("evaluated whole")
        assert got == run(alone, built), built
        for labels, _ in got:
            d = dict(labels)
            assert d.get("cluster", origin[0]) == origin[0]
            assert d.get("namespace", origin[1]) == origin[1]
        return
    # Not evaluable as a whole: every selector on its own selects only the origin's series.
    event("evaluated per selector")
    for info in promql.selectors(built):
        text = info.name + "{" + promql.render_matchers(list(info.matchers)) + "}"
        samples = run(everything, text)
        assert samples is not None
        for labels, value in samples:
            d = dict(labels)
            assert (d["cluster"], d["namespace"]) == origin, (built, d)
            assert int(value // 1000) - 1 == world.origins.index(origin)


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_native_rule(
    world: World, data: st.DataObject, query: str, reqs: tuple[Requirement, ...]
) -> None:
    """A native rule serving ``query`` answers only for the origin drawn from ``world``."""
    origin = data.draw(st.sampled_from(world.origins))
    rule = native_rule(query)
    built = build(rule, rule.static_metrics()[0], origin, reqs)
    if built is None:
        return
    check_structure(query, built, origin)
    assert_isolated(world, origin, built)


@pytest.mark.parametrize(
    "queries",
    [evaluable_queries(), function_queries()],
    ids=["evaluable-queries", "functions-and-ranges"],
)
@_SETTINGS
@given(world=worlds(), data=st.data(), reqs=requirements())
def test_native_rules_never_leak_across_namespaces_or_clusters(
    queries: st.SearchStrategy[str],
    world: World,
    data: st.DataObject,
    reqs: tuple[Requirement, ...],
) -> None:
    """Queries the fake evaluates are checked by their answers; functions and ranges, which it
    does not, by what each selector of the final query selects."""
    check_native_rule(world, data, data.draw(queries, label="query"), reqs)


@_SETTINGS
@given(
    world=worlds(),
    data=st.data(),
    template=st.sampled_from(PA_TEMPLATES),
    reqs=requirements(),
)
def test_prometheus_adapter_rules_never_leak(
    world: World, data: st.DataObject, template: str, reqs: tuple[Requirement, ...]
) -> None:
    origin = data.draw(st.sampled_from(world.origins))
    rule, metric = pa_rule(template)
    built = build(rule, metric, origin, reqs)
    if built is None:
        return
    # The template's own matchers come first in each selector; the rendered (unscoped) query
    # is the reference for the structure check.
    rendered = rule.build_query(metric, MetricRequest(namespace="NS"), QueryScope()).query
    assert len(promql.selectors(built)) == len(promql.selectors(rendered))
    assert [s.name for s in promql.selectors(built)] == [s.name for s in promql.selectors(rendered)]
    for info in promql.selectors(built):
        pinned = {(m.label, m.value) for m in info.matchers if m.op == "="}
        assert ("cluster", origin[0]) in pinned
        assert ("namespace", origin[1]) in pinned
    assert_isolated(world, origin, built)
