from __future__ import annotations

import pytest

from adapter.core.selectors import parse_selector, selector_to_string
from adapter.domain.errors import BadRequestError
from adapter.domain.models import Requirement


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (None, ()),
        ("app=a", (Requirement("app", "=", ("a",)),)),
        ("app==a", (Requirement("app", "=", ("a",)),)),
        ("app!=a", (Requirement("app", "!=", ("a",)),)),
        ("app=", (Requirement("app", "=", ("",)),)),
        ("app", (Requirement("app", "exists"),)),
        ("!app", (Requirement("app", "!"),)),
        ("tier in (b, a, a)", (Requirement("tier", "in", ("a", "b")),)),
        ("tier notin (x)", (Requirement("tier", "notin", ("x",)),)),
        ("x>3", (Requirement("x", "gt", ("3",)),)),
        ("x < -2", (Requirement("x", "lt", ("-2",)),)),
        (
            "metric.labels.container=jetstream-http,metric.labels.exported_namespace=default",
            (
                Requirement("metric.labels.container", "=", ("jetstream-http",)),
                Requirement("metric.labels.exported_namespace", "=", ("default",)),
            ),
        ),
        ("example.com/team=ml", (Requirement("example.com/team", "=", ("ml",)),)),
        (
            "b=2, a=1",
            (Requirement("a", "=", ("1",)), Requirement("b", "=", ("2",))),
        ),
    ],
)
def test_parse(text: str | None, expected: tuple[Requirement, ...]) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('a=b"c', "invalid label value"),
        ("a=b}", "invalid label value"),
        ("a in ()", "needs a value"),
        ("a in (x", r"missing '\)'"),
        ("a in x", r"needs '\('"),
        ("a=b,", "trailing ','"),
        ("a b", "unknown operator"),
        ("=b", "unexpected"),
        ("!", "needs a key"),
        ("a>b", "needs an integer"),
        ("-a=b", "invalid label key"),
        ("a" * 64 + "=b", "invalid label key"),
        ("a=" + "b" * 64, "invalid label value"),
        ("a=b c", "expected ','"),
        ("a\x00=b", "invalid label"),
    ],
)
def test_malformed_selectors_are_bad_requests(text: str, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_selector(text)


def test_oversized_selector_is_rejected_before_parsing() -> None:
    with pytest.raises(BadRequestError, match="longer than"):
        parse_selector("a=b," * 10_000)


@pytest.mark.parametrize(
    "text", ["app=a,!legacy,tier in (x,y)", "a!=b", "a", "x>3,y<4", "a notin (p,q)"]
)
def test_round_trip(text: str) -> None:
    assert selector_to_string(parse_selector(text)) == text
