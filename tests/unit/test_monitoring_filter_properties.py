"""Isolation property of the Cloud Monitoring filter builder: no selector value, object name or
namespace can change a filter's structure or drop the injected namespace clause.

A small tokenizer and parser for the filter grammar the builder writes (clauses joined by
``AND``; a clause is ``[NOT] key op value``, ``key = one_of("a",…)``, ``prefix : label`` or
``key > N``) reads every built filter back. The property: the clauses and their keys are exactly
the ones the request asks for, every value is one quoted string that decodes to the value given,
and ``resource.labels.namespace = "<request namespace>"`` is always there. Requirements are built
directly (not through the strict selector parser) so that hostile values reach the builder.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.domain.errors import BadRequestError, ForbiddenError
from adapter.domain.models import GroupResource, Requirement, RequirementOp
from adapter.rules.base import MetricRequest, QueryScope, Rule
from adapter.rules.loader import load_rules
from adapter.rules.monitoring_filter import quote
from adapter.rules.stackdriver import StackdriverOptions

OPTIONS = StackdriverOptions(mode="cloud-monitoring", project="p1", location="us-east5")
SCOPE = QueryScope(cluster="c1")
NAME = "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge"
RULES: tuple[Rule, ...] = tuple(
    r for r in load_rules(None, stackdriver=OPTIONS).rules if r.id.startswith("stackdriver:")
)
# QueryScope clauses every filter carries (the namespace one is checked on its own).
FIXED = {
    "metric.type": "prometheus.googleapis.com/jetstream_prefill_backlog_size/gauge",
    "resource.type": "prometheus_target",
    "resource.labels.project_id": "p1",
    "resource.labels.location": "us-east5",
    "resource.labels.cluster": "c1",
}

# -- the filter grammar ------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<int>-?[0-9]+)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op>!=|=|:|>|<)
    | (?P<punct>[(),])
    )""",
    re.VERBOSE | re.DOTALL,
)


def tokenize(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` tokens; an AssertionError if any character is not part of a token."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match is not None and match.end() > pos, f"stray text at {pos}: {text[pos:]!r}"
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match[kind]))
        pos = match.end()
    return tokens


def unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)


@dataclass(frozen=True)
class Clause:
    negated: bool
    key: str
    op: str
    values: tuple[str, ...]


def parse_filter(text: str) -> list[Clause]:
    """The clauses of a built filter; an AssertionError for anything outside the grammar."""
    tokens = tokenize(text)
    clauses: list[Clause] = []
    i = 0

    def take(kind: str, value: str | None = None) -> str:
        nonlocal i
        assert i < len(tokens), f"filter ends early: {text!r}"
        got_kind, got = tokens[i]
        assert got_kind == kind and (value is None or got == value), (tokens[i], text)
        i += 1
        return got

    while True:
        negated = False
        if tokens[i] == ("word", "NOT"):
            negated = True
            i += 1
        key = take("word")
        assert key not in ("AND", "OR", "NOT", "one_of"), (key, text)
        op = take("op")
        if op == ":":
            values: tuple[str, ...] = (take("word"),)
        elif op in (">", "<"):
            values = (take("int"),)
        elif tokens[i] == ("word", "one_of"):
            i += 1
            take("punct", "(")
            items = [unquote(take("string"))]
            while tokens[i] == ("punct", ","):
                i += 1
                items.append(unquote(take("string")))
            take("punct", ")")
            op = "one_of"
            values = tuple(items)
        else:
            values = (unquote(take("string")),)
        clauses.append(Clause(negated, key, op, values))
        if i == len(tokens):
            return clauses
        take("word", "AND")


# -- hostile values ------------------------------------------------------------------------------

_NASTY = st.sampled_from(
    [
        '"',
        "\\",
        "\\\\",
        '\\"',
        "(",
        ")",
        ",",
        " AND ",
        " OR ",
        "NOT ",
        "one_of(",
        '" OR metric.type = "',
        '") OR resource.labels.namespace = one_of("',
        "=",
        "!=",
        ":",
        "\n",
        "\t",
        "é",
        "名前",
        "\U0001f600",
        "\u202e",
        "",
    ]
)
VALUES = st.lists(
    st.one_of(_NASTY, st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]))),
    max_size=4,
).map("".join)
LABELS = st.sampled_from(["container", "pod", "id", "AND", "OR", "NOT", "one_of", "x_1"])
KEYS = st.one_of(
    LABELS.map(lambda label: f"metric.labels.{label}"),
    st.sampled_from(
        ["resource.labels.container", "resource.labels.namespace", "resource.labels.cluster"]
    ),
)


OPS: tuple[RequirementOp, ...] = ("=", "!=", "in", "notin", "exists", "gt", "lt")


@st.composite
def requirements(draw: st.DrawFn) -> tuple[Requirement, ...]:
    """Up to 4 requirements with distinct keys, every operator the builder can write."""
    keys = draw(st.lists(KEYS, max_size=4, unique=True))
    out: list[Requirement] = []
    for key in keys:
        op: RequirementOp = draw(st.sampled_from(OPS))
        if op in ("=", "!="):
            values: tuple[str, ...] = (draw(VALUES),)
        elif op in ("in", "notin"):
            values = tuple(sorted(set(draw(st.lists(VALUES, min_size=1, max_size=4)))))
        elif op == "exists":
            values = ()
        else:
            values = (str(draw(st.integers(-(10**12), 10**12))),)
        out.append(Requirement(key=key, op=op, values=values))
    return tuple(out)


def expected_clause(req: Requirement) -> Clause:
    """The one clause the builder must write for ``req`` (as parsed back)."""
    if req.op in ("=", "!="):
        return Clause(False, req.key, req.op, req.values)
    if req.op in ("in", "notin"):
        negate = req.op == "notin"
        if len(req.values) == 1:
            return Clause(False, req.key, "!=" if negate else "=", req.values)
        return Clause(negate, req.key, "one_of", req.values)
    if req.op == "exists":
        prefix, _, label = req.key.rpartition(".")
        return Clause(False, prefix, ":", (label,))
    return Clause(False, req.key, ">" if req.op == "gt" else "<", (str(int(req.values[0])),))


def build(kind: Literal["custom", "external"], request: MetricRequest) -> list[str]:
    for rule in RULES:
        served = rule.resolve(kind, GroupResource("pods") if kind == "custom" else None, NAME)
        if served is not None:
            filters: list[str] = json.loads(rule.build_query(served, request, SCOPE).query)[
                "filters"
            ]
            return filters
    raise AssertionError(f"{NAME} not served")


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["custom", "external"]),
    namespace=st.one_of(st.sampled_from(["default", "team-a"]), VALUES),
    selector=requirements(),
    pods=st.one_of(st.none(), st.lists(VALUES, min_size=1, max_size=3, unique=True)),
)
def test_filter_structure_is_fixed_by_the_request(
    kind: Literal["custom", "external"],
    namespace: str,
    selector: tuple[Requirement, ...],
    pods: list[str] | None,
) -> None:
    # Custom metrics accept metric.labels.* only; external ones resource.labels.* too.
    if kind == "custom":
        selector = tuple(r for r in selector if r.key.startswith("metric.labels."))
    object_names = tuple(pods) if pods is not None and kind == "custom" else None
    request = MetricRequest(
        namespace=namespace, object_names=object_names, metric_selector=selector
    )
    fixed = {**FIXED, "resource.labels.namespace": namespace}
    try:
        filters = build(kind, request)
    except ForbiddenError:
        # Refused only for a selector that contradicts the injected scope.
        assert any(
            r.op in ("=", "in") and r.key in fixed and set(r.values) != {fixed[r.key]}
            for r in selector
        ), selector
        return
    except BadRequestError:
        # Refused only for a character the filter language cannot carry.
        texts = [namespace, *(v for r in selector for v in r.values), *(object_names or ())]
        unwritable = any(
            (ord(c) < 0x20 and c not in "\n\r\t") or ord(c) == 0x7F for t in texts for c in t
        )
        assert unwritable, (namespace, selector, object_names)
        return
    assert len(filters) == 1
    clauses = parse_filter(filters[0])
    want = [Clause(False, k, "=", (v,)) for k, v in fixed.items()]
    want += [expected_clause(r) for r in selector]
    if object_names is not None:
        names = tuple(sorted(set(object_names)))
        want.append(
            Clause(False, "metric.labels.pod", "=", names)
            if len(names) == 1
            else Clause(False, "metric.labels.pod", "one_of", names)
        )
    # The builder deduplicates identical clauses (a selector repeating a scope clause).
    got_keys = Counter((c.key, c.op) for c in clauses)
    assert got_keys == Counter((c.key, c.op) for c in set(want)), (filters[0], selector)
    assert Counter(clauses) == Counter(set(want)), filters[0]
    # The namespace clause is there, with the request's namespace and nothing else.
    assert Clause(False, "resource.labels.namespace", "=", (namespace,)) in clauses


@settings(max_examples=300, deadline=None)
@given(value=VALUES)
def test_one_quoted_value_is_one_token(value: str) -> None:
    """The tokenizer itself: a quoted hostile value is a single string token."""
    try:
        literal = quote(value)
    except BadRequestError:
        return
    assert tokenize(literal) == [("string", literal)]
    assert unquote(literal) == value
