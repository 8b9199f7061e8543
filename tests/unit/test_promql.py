"""adapter.promql: escaping, requirement translation, selector listing and scope injection.

Expected answers are written by hand from PromQL's grammar; the property tests check the
module against ``promql_parser`` (the parser the module itself cross-checks with) and against
Python's ``re`` for regex escaping. ``tests/integration/test_promql_prometheus.py`` checks the
escaping against a real Prometheus.
"""

from __future__ import annotations

import re

import promql_parser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter import promql
from adapter.domain.errors import BadRequestError, QueryError
from adapter.domain.models import Matcher, Requirement
from adapter.promql import (
    SelectorInfo,
    escape_regex,
    escape_string,
    inject,
    render_matcher,
    render_matchers,
    requirements_to_matchers,
    selectors,
    validate,
)
from adapter.promql import injection as promql_inject
from adapter.promql import lexer as promql_lexer

NS = Matcher("namespace", "=", "serving")
CL = Matcher("cluster", "=", "c1")
SCOPE = [NS, CL]
R = 'namespace="serving",cluster="c1"'


def _sel(name: str, *matchers: tuple[str, str, str]) -> SelectorInfo:
    return SelectorInfo(name, tuple(Matcher(label, op, value) for label, op, value in matchers))  # type: ignore[arg-type]


def _parsed_value(literal: str) -> str:
    """What promql_parser decodes ``x{a=<literal>}`` to."""
    expr = promql_parser.parse("x{a=" + literal + "}")
    assert isinstance(expr, promql_parser.VectorSelector)
    value = expr.matchers.matchers[0].value
    assert isinstance(value, str)
    return value


# --------------------------------------------------------------------------------------------
# escape_string / escape_regex


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", '""'),
        ("default", '"default"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb", '"a\\nb"'),
        ("\t\r\a\b\f\v", '"\\t\\r\\a\\b\\f\\v"'),
        ("\x00\x1f\x7f", '"\\x00\\x1f\\x7f"'),
        ("é ü 日本", '"é ü 日本"'),
        ("😀", '"😀"'),
        ("\u2028\u00a0\ufeff", '"\\u2028\\u00a0\\ufeff"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("}{,'`", '"}{,\'`"'),
        ('\\"', '"\\\\\\""'),
    ],
)
def test_escape_string(value: str, expected: str) -> None:
    assert escape_string(value) == expected
    assert _parsed_value(expected) == value


def test_escape_string_rejects_lone_surrogates() -> None:
    with pytest.raises(QueryError, match="surrogate U\\+D800"):
        escape_string("a\ud800")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain-value_1", "plain-value_1"),
        ("a.b", "a\\.b"),
        ("\\.+*?()|[]{}^$", "\\\\\\.\\+\\*\\?\\(\\)\\|\\[\\]\\{\\}\\^\\$"),
        ("", ""),
        ("a-b/c:d", "a-b/c:d"),
    ],
)
def test_escape_regex(value: str, expected: str) -> None:
    assert escape_regex(value) == expected


@given(st.text())
def test_escape_regex_matches_only_itself(value: str) -> None:
    # Python's re agrees with RE2 on escaped metacharacters and on literal characters.
    pattern = re.compile(escape_regex(value), re.DOTALL)
    assert pattern.fullmatch(value)
    assert not pattern.fullmatch(value + "x")
    assert not pattern.fullmatch("x" + value)


@given(st.text())
def test_escape_string_round_trips_through_the_parser(value: str) -> None:
    assert _parsed_value(escape_string(value)) == value


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
def test_escape_string_output_is_a_single_line(value: str) -> None:
    # A literal newline would end a PromQL string; every escape keeps the literal on one line.
    assert "\n" not in escape_string(value)
    assert "\r" not in escape_string(value)


# --------------------------------------------------------------------------------------------
# render_matcher(s)


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        (Matcher("namespace", "=", "default"), 'namespace="default"'),
        (Matcher("pod", "!=", ""), 'pod!=""'),
        (Matcher("pod", "=~", "a\\.b|c"), 'pod=~"a\\\\.b|c"'),
        (Matcher("_x9", "!~", 'q"'), '_x9!~"q\\""'),
        (Matcher("__name__", "=", "up"), '__name__="up"'),
    ],
)
def test_render_matcher(matcher: Matcher, expected: str) -> None:
    assert render_matcher(matcher) == expected


def test_render_matchers_joins_with_commas() -> None:
    assert render_matchers([NS, CL]) == R
    assert render_matchers([]) == ""


@pytest.mark.parametrize("label", ["", "9a", "a-b", "a.b", "a:b", "é", 'a"', "a b"])
def test_render_matcher_rejects_bad_label_names(label: str) -> None:
    with pytest.raises(QueryError, match="not a valid PromQL label name"):
        render_matcher(Matcher(label, "=", "x"))


def test_render_matcher_rejects_bad_ops() -> None:
    with pytest.raises(QueryError, match="not a PromQL matcher operator"):
        render_matcher(Matcher("a", "==", "x"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# requirements_to_matchers


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        (Requirement("app", "=", ("web",)), Matcher("app", "=", "web")),
        (Requirement("app", "!=", ("web",)), Matcher("app", "!=", "web")),
        (Requirement("app", "=", ("",)), Matcher("app", "=", "")),
        (Requirement("tier", "in", ("a", "b.c")), Matcher("tier", "=~", "a|b\\.c")),
        (Requirement("tier", "notin", ("x",)), Matcher("tier", "!~", "x")),
        (Requirement("tier", "in", ("", "a")), Matcher("tier", "=~", "|a")),
        (Requirement("model", "exists"), Matcher("model", "!=", "")),
        (Requirement("legacy", "!"), Matcher("legacy", "=", "")),
    ],
)
def test_requirements_to_matchers(req: Requirement, expected: Matcher) -> None:
    assert requirements_to_matchers([req]) == [expected]


def test_requirements_keep_order_and_rename() -> None:
    reqs = [
        Requirement("app.kubernetes.io/name", "=", ("jetstream",)),
        Requirement("zone", "in", ("us-a", "us-b")),
    ]
    got = requirements_to_matchers(reqs, rename={"app.kubernetes.io/name": "app"})
    assert got == [Matcher("app", "=", "jetstream"), Matcher("zone", "=~", "us-a|us-b")]


@pytest.mark.parametrize("op", ["gt", "lt"])
def test_requirements_reject_numeric_comparisons(op: str) -> None:
    with pytest.raises(BadRequestError, match=f"operator {op} is not supported for PromQL"):
        requirements_to_matchers([Requirement("replicas", op, ("3",))])  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["app.kubernetes.io/name", "a-b", "9lives"])
def test_requirements_reject_keys_that_are_not_label_names(key: str) -> None:
    with pytest.raises(BadRequestError, match=re.escape(repr(key))):
        requirements_to_matchers([Requirement(key, "=", ("x",))])


def test_requirements_check_the_renamed_label() -> None:
    with pytest.raises(BadRequestError, match="'app'"):
        requirements_to_matchers([Requirement("app", "exists")], rename={"app": "a.b"})


@pytest.mark.parametrize(
    "req",
    [
        Requirement("a", "=", ()),
        Requirement("a", "!=", ("x", "y")),
        Requirement("a", "in", ()),
        Requirement("a", "notin", ()),
    ],
)
def test_requirements_reject_wrong_value_counts(req: Requirement) -> None:
    with pytest.raises(BadRequestError, match="'a'"):
        requirements_to_matchers([req])


def test_in_requirement_matches_each_value_and_nothing_else() -> None:
    values = ("a.b", "c|d", "(e)")
    (m,) = requirements_to_matchers([Requirement("k", "in", values)])
    pattern = re.compile(m.value)
    for value in values:
        assert pattern.fullmatch(value)
    for other in ("aXb", "c", "d", "e", "(e", "a.b|c|d"):
        assert not pattern.fullmatch(other)


# --------------------------------------------------------------------------------------------
# validate


@pytest.mark.parametrize(
    "query",
    ["up", 'sum by (pod) (rate(x{a="b"}[5m]))', "foo # comment", "1 + 2", '"str"'],
)
def test_validate_accepts(query: str) -> None:
    validate(query)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no expression"),
        ("   # only a comment", "no expression"),
        ('foo{a="b"', "."),
        ("sum(", "."),
        ("rate(foo)", "."),
        ('foo{a="\\q"}', "escape"),
        ("foo[5m] + 1", "."),
        ("x" * (promql.MAX_QUERY_LENGTH + 1), "longer than"),
        ("(" * 100 + "x" + ")" * 100, "deeper than"),
        ("+".join(["x"] * 600), "tokens"),
        ("-" * 2000 + "x", "tokens"),
    ],
)
def test_validate_rejects(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        validate(query)


@pytest.mark.parametrize("query", [None, 3, b"up"])
def test_non_strings_are_query_errors(query: object) -> None:
    with pytest.raises(QueryError, match="must be a string"):
        validate(query)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="must be a string"):
        selectors(query)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="must be a string"):
        inject(query, SCOPE)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# selectors


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("up", [_sel("up")]),
        ('up{job="a"}', [_sel("up", ("job", "=", "a"))]),
        ('{__name__="x", a!="b"}', [_sel("", ("__name__", "=", "x"), ("a", "!=", "b"))]),
        ('{"my.metric", a=~"b"}', [_sel("", ("__name__", "=", "my.metric"), ("a", "=~", "b"))]),
        ('foo{"a.b"="c"}', [_sel("foo", ("a.b", "=", "c"))]),
        (
            'rate(a{x="1"}[5m]) / on(pod) group_left(model) b',
            [_sel("a", ("x", "=", "1")), _sel("b")],
        ),
        ("max_over_time(rate(a[1m])[5m:30s] offset 1m)", [_sel("a")]),
        ("topk(3, a) or bottomk(2, b)", [_sel("a"), _sel("b")]),
        ('count_values("v", a) > bool 1', [_sel("a")]),
        (
            'label_replace(a, "dst", "x\\"}{", "src", "(.*)") unless c',
            [_sel("a"), _sel("c")],
        ),
        ("sum by (and) (and) and sum without (x) (or)", [_sel("and"), _sel("or")]),
        ("a offset 5m @ start() + b @ 100 offset -1m", [_sel("a"), _sel("b")]),
        ("vector(1) + time()", []),
        ("Inf + NaN", []),
        (
            "a{x='s\\'q', y=`r\\aw`, z=\"\\u00e9\\x41\\101\"}",
            [_sel("a", ("x", "=", "s'q"), ("y", "=", "r\\aw"), ("z", "=", "éAA"))],
        ),
        ("a # b{c}\n+ d", [_sel("a"), _sel("d")]),
        ("a:b:rate5m", [_sel("a:b:rate5m")]),
    ],
)
def test_selectors(query: str, expected: list[SelectorInfo]) -> None:
    assert selectors(query) == expected


# --------------------------------------------------------------------------------------------
# inject: exact outputs

INJECT_CASES = [
    ("up", f"up{{{R}}}"),
    ("up{}", f"up{{{R}}}"),
    ("up{ }", f"up{{{R} }}"),
    ('up{job="a"}', f'up{{job="a",{R}}}'),
    ('up{job="a",}', f'up{{job="a",{R}}}'),
    ('up{ job = "a" , }', f'up{{ job = "a" ,{R} }}'),
    ('up {job="a"}', f'up {{job="a",{R}}}'),
    ('{__name__="up"}', f'{{__name__="up",{R}}}'),
    ('{"my.metric"}', f'{{"my.metric",{R}}}'),
    ("rate(x[5m])", f"rate(x{{{R}}}[5m])"),
    ('rate(x{a="b"}[5m] offset 1m)', f'rate(x{{a="b",{R}}}[5m] offset 1m)'),
    ("max_over_time(x[5m:30s])", f"max_over_time(x{{{R}}}[5m:30s])"),
    (
        "max_over_time(rate(x[1m])[10m:1m] offset 2m)",
        f"max_over_time(rate(x{{{R}}}[1m])[10m:1m] offset 2m)",
    ),
    ("(a + b)[5m:]", f"(a{{{R}}} + b{{{R}}})[5m:]"),
    ("x offset 5m", f"x{{{R}}} offset 5m"),
    ("x @ start()", f"x{{{R}}} @ start()"),
    ("x @ 1700000000 offset -5m", f"x{{{R}}} @ 1700000000 offset -5m"),
    ("a / on(pod) b", f"a{{{R}}} / on(pod) b{{{R}}}"),
    ("a * ignoring(x, y) b", f"a{{{R}}} * ignoring(x, y) b{{{R}}}"),
    (
        "a * on(pod) group_left(model, chip) b",
        f"a{{{R}}} * on(pod) group_left(model, chip) b{{{R}}}",
    ),
    ("a * on(pod) group_left b", f"a{{{R}}} * on(pod) group_left b{{{R}}}"),
    ("a / on(pod) group_right() b", f"a{{{R}}} / on(pod) group_right() b{{{R}}}"),
    ("a and b or c unless d", f"a{{{R}}} and b{{{R}}} or c{{{R}}} unless d{{{R}}}"),
    ("a > bool 0", f"a{{{R}}} > bool 0"),
    ("a == bool b", f"a{{{R}}} == bool b{{{R}}}"),
    ("a atan2 b", f"a{{{R}}} atan2 b{{{R}}}"),
    ("-a", f"-a{{{R}}}"),
    ("sum by (pod) (a)", f"sum by (pod) (a{{{R}}})"),
    ("sum(a) by (pod)", f"sum(a{{{R}}}) by (pod)"),
    ("sum without (pod) (a)", f"sum without (pod) (a{{{R}}})"),
    ("SUM BY (pod) (a) AND b OFFSET 1m", f"SUM BY (pod) (a{{{R}}}) AND b{{{R}}} OFFSET 1m"),
    ("topk by (pod) (3, a)", f"topk by (pod) (3, a{{{R}}})"),
    ("quantile(0.9, a)", f"quantile(0.9, a{{{R}}})"),
    ('count_values("value", a)', f'count_values("value", a{{{R}}})'),
    (
        'label_replace(a, "dst", "$1", "src", "(.*)")',
        f'label_replace(a{{{R}}}, "dst", "$1", "src", "(.*)")',
    ),
    (
        'label_join(a, "d", "\\",", "s1", "s2")',
        f'label_join(a{{{R}}}, "d", "\\",", "s1", "s2")',
    ),
    (
        "label_replace(a, 'd', '{x=\"y\"}', `s`, `(.*)`)",
        f"label_replace(a{{{R}}}, 'd', '{{x=\"y\"}}', `s`, `(.*)`)",
    ),
    ("histogram_quantile(0.9, sum by (le) (rate(h[5m])))", None),
    ("clamp_min(abs(round(a, 0.5)), 0)", f"clamp_min(abs(round(a{{{R}}}, 0.5)), 0)"),
    ("absent(a)", f"absent(a{{{R}}})"),
    ("vector(1)", "vector(1)"),
    ("time() - 1", "time() - 1"),
    ('"just a string"', '"just a string"'),
    ("a # a comment with b{c}\n+ b", f"a{{{R}}} # a comment with b{{c}}\n+ b{{{R}}}"),
    ('a{x="1" # why\n}', f'a{{x="1",{R} # why\n}}'),
    ("a#c\n{x='1'}", f"a#c\n{{x='1',{R}}}"),
    ("a:b:rate5m", f"a:b:rate5m{{{R}}}"),
    ('a{or="x",by="y"}', f'a{{or="x",by="y",{R}}}'),
    # Metric names that look like keywords, where the parser takes them as names.
    ("sum", f"sum{{{R}}}"),
    ("by + without", f"by{{{R}}} + without{{{R}}}"),
    ("offset offset 5m", f"offset{{{R}}} offset 5m"),
    ("and and or", f"and{{{R}}} and or{{{R}}}"),
    ("start @ start()", f"start{{{R}}} @ start()"),
    ("sum by (x) (count_values)", f"sum by (x) (count_values{{{R}}})"),
    ("rate{job='x'}", f"rate{{job='x',{R}}}"),
    ("Infinity + inf", f"Infinity{{{R}}} + inf"),
    ("e + 1e3 + 0x1F", f"e{{{R}}} + 1e3 + 0x1F"),
]


def _fill(query: str, expected: str | None) -> str:
    if expected is not None:
        return expected
    return query.replace("h[5m]", f"h{{{R}}}[5m]")


@pytest.mark.parametrize(("query", "expected"), INJECT_CASES)
def test_inject(query: str, expected: str | None) -> None:
    want = _fill(query, expected)
    assert inject(query, SCOPE) == want
    # The answer is a query the parser reads as intended: every selector carries the scope.
    for sel in selectors(want):
        assert NS in sel.matchers
        assert CL in sel.matchers


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('a{namespace="serving"}', f'a{{namespace="serving",{render_matcher(CL)}}}'),
        ('a{namespace="serving",cluster="c1"}', 'a{namespace="serving",cluster="c1"}'),
        ('a{namespace=~"serv.*"}', f'a{{namespace=~"serv.*",{R}}}'),
        ('a{namespace!="x"}', f'a{{namespace!="x",{R}}}'),
        ('a{namespace!~""}', f'a{{namespace!~"",{R}}}'),
        ('a{namespace="serving"} + b', f'a{{namespace="serving",cluster="c1"}} + b{{{R}}}'),
    ],
)
def test_inject_keeps_existing_matchers_and_does_not_duplicate(query: str, expected: str) -> None:
    assert inject(query, SCOPE) == expected


def test_inject_contradiction_names_label_and_both_values() -> None:
    with pytest.raises(QueryError) as info:
        inject('a + b{namespace="other"}', SCOPE)
    message = info.value.message
    assert "namespace" in message
    assert '"other"' in message
    assert '"serving"' in message
    assert "contradicts the injected scope" in message


def test_inject_adds_non_equality_matchers_even_over_equality() -> None:
    scope = [Matcher("pod", "=~", "a|b"), Matcher("namespace", "!=", "kube-system")]
    assert inject('x{pod="a"}', scope) == 'x{pod="a",pod=~"a|b",namespace!="kube-system"}'


def test_inject_with_no_matchers_returns_the_query_unchanged() -> None:
    assert inject("sum(rate(x[5m]))", []) == "sum(rate(x[5m]))"


def test_inject_dedupes_its_own_matchers_and_rejects_contradictions() -> None:
    assert inject("x", [NS, NS]) == 'x{namespace="serving"}'
    with pytest.raises(QueryError, match="contradict each other on label namespace"):
        inject("x", [NS, Matcher("namespace", "=", "other")])


def test_inject_escapes_values() -> None:
    evil = 'a"} or vector(1) # \\'
    out = inject("x", [Matcher("namespace", "=", evil)])
    assert out == 'x{namespace="a\\"} or vector(1) # \\\\"}'
    assert selectors(out) == [_sel("x", ("namespace", "=", evil))]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no expression"),
        ("sum(", "."),
        ('a{x="b" or y="c"}', "'or' between matchers"),
        ('a{x="\\xff"}', "above 0x7f"),
        ('a{x="\\377"}', "above 0x7f"),
        ("a{x=`r\rs`}", "carriage return"),
        ('a{__name__="b"}', "metric name"),
        ("a{x}", "."),
        ("a{x=y}", "."),
        ('a{x="1",,}', "."),
        ("a[5m # c\n]", "."),
        ("a € b", "unexpected character"),
        ('a{x="1"}{y="2"}', "."),
        ("(" * 70 + "a" + ")" * 70, "deeper than"),
    ],
)
def test_inject_rejects(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        inject(query, SCOPE)


@pytest.mark.parametrize(
    "matcher",
    [Matcher("name-space", "=", "x"), Matcher("", "=", "x"), Matcher("a", "<", "x")],  # type: ignore[arg-type]
)
def test_inject_rejects_bad_injected_matchers(matcher: Matcher) -> None:
    with pytest.raises(QueryError):
        inject("x", [matcher])


def test_inject_refuses_when_lexer_and_parser_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a lexer blind spot: if it misses a selector the parser sees, nothing is returned.
    real = promql_lexer.lex_selectors

    def blind(query: str) -> list[promql_lexer.Span]:
        return real(query)[:-1]

    promql_inject._analyse.cache_clear()
    monkeypatch.setattr(promql_inject, "lex_selectors", blind)
    try:
        with pytest.raises(QueryError, match="lexer found 1, parser 2"):
            inject("a + b", SCOPE)
    finally:
        promql_inject._analyse.cache_clear()


# --------------------------------------------------------------------------------------------
# Property tests

BASE_QUERIES = [
    "x",
    'x{a="b"}',
    'sum by (pod) (rate(x[5m])) / on(pod) group_left count(y{z=~".+"})',
    'max_over_time(x[10m:1m] offset 1m) and {__name__="y",}',
    'label_replace(x, "d", "}\\"{", "s", "(.*)") + -z @ end()',
]

any_text = st.text(max_size=40)
# Prefixed so that random requirements never constrain a label the base queries already use.
label_names = st.from_regex(r"[a-zA-Z0-9_]{0,10}", fullmatch=True).map(lambda s: "k_" + s)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(BASE_QUERIES),
    values=st.lists(any_text, min_size=1, max_size=3),
)
def test_inject_random_values_read_back_exactly(base: str, values: list[str]) -> None:
    scope = [Matcher(f"scope{i}", "=", value) for i, value in enumerate(values)]
    out = inject(base, scope)
    promql_parser.parse(out)
    before = selectors(base)
    after = selectors(out)
    assert [s.name for s in after] == [s.name for s in before]
    for old, new in zip(before, after, strict=True):
        assert new.matchers == old.matchers + tuple(scope)


requirements = st.one_of(
    st.builds(
        Requirement,
        key=label_names,
        op=st.sampled_from(["=", "!="]),
        values=st.tuples(any_text),
    ),
    st.builds(
        Requirement,
        key=label_names,
        op=st.sampled_from(["in", "notin"]),
        values=st.lists(any_text, min_size=1, max_size=4, unique=True).map(
            lambda v: tuple(sorted(v))
        ),
    ),
    st.builds(Requirement, key=label_names, op=st.sampled_from(["exists", "!"])),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASE_QUERIES), reqs=st.lists(requirements, max_size=4))
def test_random_selectors_never_change_the_query_shape(base: str, reqs: list[Requirement]) -> None:
    matchers = requirements_to_matchers(reqs)
    # Contradicting equalities among random requirements are legitimately refused.
    equal = [(m.label, m.value) for m in matchers if m.op == "="]
    if len({label for label, _ in equal}) != len(set(equal)):
        with pytest.raises(QueryError, match="contradict"):
            inject(base, matchers)
        return
    out = inject(base, matchers)
    before = selectors(base)
    after = selectors(out)
    assert len(after) == len(before)
    assert [s.name for s in after] == [s.name for s in before]
    for sel in after:
        for m in matchers:
            assert m in sel.matchers
    # Each in/notin regex, decoded by the parser, matches exactly the requirement's values.
    for req, m in zip(reqs, matchers, strict=True):
        if req.op in ("in", "notin"):
            pattern = re.compile(m.value, re.DOTALL)
            assert all(pattern.fullmatch(v) for v in req.values)
            assert not pattern.fullmatch("\x00".join(req.values) + "\x00")


# Random query shapes: a small PromQL generator producing instant-vector expressions.

_NAMES = ["up", "x", "jetstream_slots", "a:b:c", "sum", "and", "by", "offset", "start", "Inf1"]
_SPACE = st.sampled_from([" ", "  ", "\n", "\t", ' # note {x="}\n'])
_GAP = st.sampled_from(["", " ", "\n", " # c\n"])
_SAFE_TEXT = st.text(alphabet=st.characters(exclude_characters="§", codec="utf-8"), max_size=8)


@st.composite
def _matcher_text(draw: st.DrawFn) -> str:
    label = draw(st.sampled_from(["job", "pod", "le", "by", "on", "offset", "_a1"]))
    op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
    value = draw(_SAFE_TEXT)
    literal = escape_string(escape_regex(value) if "~" in op else value)
    return f"{label}{draw(_GAP)}{op}{draw(_GAP)}{literal}"


@st.composite
def _selector(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from([*_NAMES, ""]))
    matchers = draw(st.lists(_matcher_text(), max_size=3))
    if not name:
        matchers.insert(0, f'__name__="{draw(st.sampled_from(_NAMES))}"')
    if not matchers and draw(st.booleans()):
        return name
    gap = draw(_GAP)
    body = ("," + gap).join(matchers)
    trailing_comma: bool = draw(st.booleans())
    trailing = "," if matchers and trailing_comma else ""
    return f"{name}{draw(_GAP)}{{{gap}{body}{trailing}{gap}}}"


@st.composite
def _modified(draw: st.DrawFn) -> str:
    sel = draw(_selector())
    modifier = draw(
        st.sampled_from(["", " offset 5m", " offset -1h30m", " @ start()", " @ 100 offset 1m"])
    )
    return sel + modifier


def _vector(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    sp = _SPACE
    return st.one_of(
        st.builds(lambda s, r: f"rate({s}[{r}])", _selector(), st.sampled_from(["5m", "1h"])),
        st.builds(lambda e: f"max_over_time(({e})[5m:30s])", children),
        st.builds(lambda e, s: f"abs({s}{e})", children, _GAP),
        st.builds(
            lambda e, agg, mod, s: f"{agg}{s}{mod}{s}({e})",
            children,
            st.sampled_from(["sum", "max", "count", "SUM"]),
            st.sampled_from(["", "by (pod)", "without (le, job)", "BY(x)"]),
            sp,
        ),
        st.builds(lambda e, s: f"sum({e}){s}by{s}(pod)", children, sp),
        st.builds(lambda e: f"topk(3, {e})", children),
        st.builds(lambda e, s: f"count_values({escape_string(s)}, {e})", children, _SAFE_TEXT),
        st.builds(
            lambda a, b, op, mod, s: f"({a}){s}{op}{s}{mod}{s}({b})",
            children,
            children,
            st.sampled_from(["+", "/", "*", "and", "or", "unless", "atan2", "AND"]),
            st.sampled_from(["", "on(pod)", "ignoring(le)", "on()"]),
            sp,
        ),
        st.builds(
            lambda a, b, s: f"({a}){s}*{s}on(pod){s}group_left(model){s}({b})",
            children,
            children,
            sp,
        ),
        st.builds(lambda a, s: f"({a}){s}>{s}bool{s}1", children, sp),
        st.builds(lambda a: f"-({a})", children),
        st.builds(
            lambda e, s: f'label_replace({e}, "dst", {escape_string(s)}, "src", "(.*)")',
            children,
            _SAFE_TEXT,
        ),
    )


QUERIES = st.recursive(_modified(), _vector, max_leaves=6)
SENTINEL = Matcher("zz_scope", "=", "§")


def _is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(char in it for char in short)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES)
def test_inject_on_random_query_shapes(query: str) -> None:
    validate(query)  # the generator must only produce valid PromQL
    before = selectors(query)
    assert before, "every generated query has at least one selector"
    out = inject(query, [SENTINEL])
    after = selectors(out)
    assert [s.name for s in after] == [s.name for s in before]
    for old, new in zip(before, after, strict=True):
        assert new.matchers == (*old.matchers, SENTINEL)
    # Only insertions: the original text survives in order, plus one sentinel per selector.
    assert _is_subsequence(query, out)
    assert out.count(render_matcher(SENTINEL)) == len(before)


def test_lexer_finds_what_the_parser_finds_for_every_inject_case() -> None:
    # selectors() cross-checks the two; this pins that each case's count is the expected one.
    counts = {query: len(selectors(query)) for query, _ in INJECT_CASES}
    assert counts["vector(1)"] == 0
    assert counts["a and b or c unless d"] == 4
    assert counts["max_over_time(rate(x[1m])[10m:1m] offset 2m)"] == 1
