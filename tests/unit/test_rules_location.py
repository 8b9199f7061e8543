"""RuleLocation: the one place rule compile errors get their file, rule and field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from adapter.domain.errors import RuleError
from adapter.rules.location import RuleLocation
from adapter.rules.native import compile_native
from adapter.rules.prometheus_adapter import compile_discovery_rule

AT = RuleLocation("rules.yaml", "metrics[2] (m)")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    window: int = 0


def test_an_error_names_file_rule_and_field() -> None:
    err = AT.error("boom", "window")
    assert str(err) == "file rules.yaml, rule metrics[2] (m), field window: boom"
    assert (err.file, err.rule, err.field) == ("rules.yaml", "metrics[2] (m)", "window")


def test_an_error_without_a_field() -> None:
    assert str(AT.error("boom")) == "file rules.yaml, rule metrics[2] (m): boom"


def test_parse_returns_the_model() -> None:
    assert AT.parse(_Spec, {"name": "x", "window": 3}, what="metric") == _Spec(name="x", window=3)


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (["x"], "", "each metric must be a mapping"),
        ({"window": 3}, "name", "Field required"),
        ({"name": "x", "extra": 1}, "extra", "Extra inputs are not permitted"),
        ({"name": "x", "window": "3"}, "window", "valid integer"),
    ],
)
def test_parse_reports_the_first_fault_where_it_is(raw: object, field: str, words: str) -> None:
    with pytest.raises(RuleError) as info:
        AT.parse(_Spec, raw, what="metric")
    assert info.value.field == field
    assert info.value.rule == "metrics[2] (m)"
    assert words in str(info.value)


def test_label_names() -> None:
    assert AT.label_name("pod_name", "objectLabels") == "pod_name"
    with pytest.raises(RuleError, match=r"field objectLabels: 'pod-name' is not a valid label"):
        AT.label_name("pod-name", "objectLabels")


def test_both_rule_formats_report_label_names_alike() -> None:
    with pytest.raises(RuleError) as native:
        compile_native(
            {"name": "m", "type": "pods", "query": "sum(m)", "objectLabels": ["a-b"]},
            index=0,
            file="n.yaml",
            rule_id="n",
            source="native",
        )
    with pytest.raises(RuleError) as adapter:
        compile_discovery_rule(
            {
                "seriesQuery": "m",
                "resources": {"overrides": {"a-b": {"resource": "pod"}}},
                "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            },
            kind="custom",
            file="pa.yaml",
            rule="rules[0]",
            rule_id="pa",
        )
    assert str(native.value) == (
        "file n.yaml, rule metrics[0] (m), field objectLabels: 'a-b' is not a valid label name"
    )
    assert str(adapter.value) == (
        "file pa.yaml, rule rules[0], field resources.overrides.a-b: "
        "'a-b' is not a valid label name"
    )
