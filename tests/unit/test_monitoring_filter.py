"""Cloud Monitoring filter quoting and selector translation (as the Stackdriver adapter does)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.core.selectors import parse_selector
from adapter.domain.errors import BadRequestError
from adapter.domain.models import Requirement
from adapter.rules import monitoring_filter as mf
from tests.support.cm_server import unquote


@given(
    st.text(
        alphabet=st.characters(
            min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=["Cs"]
        )
    )
)
def test_quote_round_trips_and_cannot_break_out(value: str) -> None:
    quoted = mf.quote(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    body = quoted[1:-1]
    # Every quote inside is escaped: the literal ends only at the final quote.
    assert all(body[i - 1] == "\\" for i, c in enumerate(body) if c == '"')
    assert unquote(quoted) == value


def test_quote_refuses_control_characters() -> None:
    with pytest.raises(BadRequestError):
        mf.quote("a\x00b")
    assert mf.quote('x" OR metric.type = "y') == '"x\\" OR metric.type = \\"y"'


def ext(text: str) -> mf.SelectorFilter:
    return mf.selector_filter(
        parse_selector(text), prefixes=mf.EXTERNAL_PREFIXES, full_names=mf.EXTERNAL_FULL_NAMES
    )


@pytest.mark.parametrize(
    ("selector", "clauses"),
    [
        ("metric.labels.a=v", ['metric.labels.a = "v"']),
        ("metric.labels.a!=v", ['metric.labels.a != "v"']),
        ("metric.labels.a in (v)", ['metric.labels.a = "v"']),
        ("metric.labels.a in (v,w)", ['metric.labels.a = one_of("v","w")']),
        ("metric.labels.a notin (v)", ['metric.labels.a != "v"']),
        ("metric.labels.a notin (v,w)", ['NOT metric.labels.a = one_of("v","w")']),
        ("metric.labels.a", ["metric.labels : a"]),
        ("resource.labels.zone", ["resource.labels : zone"]),
        ("metric.labels.n>5", ["metric.labels.n > 5"]),
        ("metric.labels.n<-3", ["metric.labels.n < -3"]),
        ("resource.type=k8s_node", ['resource.type = "k8s_node"']),
        ("metadata.user_labels.team=x", ['metadata.user_labels.team = "x"']),
    ],
)
def test_selector_translation(selector: str, clauses: list[str]) -> None:
    assert list(ext(selector).clauses) == clauses


def test_reducer_and_project_switch() -> None:
    got = ext("reducer=REDUCE_MEAN,resource.labels.project_id=other")
    assert got.reducer == "REDUCE_MEAN"
    assert got.project == "other"
    assert got.clauses == ('resource.labels.project_id = "other"',)
    with pytest.raises(BadRequestError):
        ext("reducer=REDUCE_NOPE")
    with pytest.raises(BadRequestError):
        ext("resource.labels.project_id!=other")


@pytest.mark.parametrize("selector", ["!metric.labels.a", "foo=bar", "metric.type=x"])
def test_refused_external(selector: str) -> None:
    with pytest.raises(BadRequestError):
        ext(selector)


def test_custom_metrics_accept_only_metric_labels() -> None:
    with pytest.raises(BadRequestError):
        mf.selector_filter(
            parse_selector("resource.labels.a=b"),
            prefixes=mf.CUSTOM_PREFIXES,
            full_names=mf.CUSTOM_FULL_NAMES,
        )


def test_keys_are_checked_and_one_of_is_bounded() -> None:
    with pytest.raises(BadRequestError):
        mf.equals("metric.labels.a-b", "x")
    with pytest.raises(BadRequestError):
        mf.one_of("metric.labels.pod", [str(i) for i in range(101)])
    with pytest.raises(BadRequestError):
        mf.selector_filter(
            (Requirement("metric.labels.a", "gt", ("1.5",)),),
            prefixes=mf.EXTERNAL_PREFIXES,
            full_names=mf.EXTERNAL_FULL_NAMES,
        )
    assert mf.join(['b = "1"', 'a = "2"', 'b = "1"']) == 'a = "2" AND b = "1"'
