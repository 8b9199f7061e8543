"""Loading rules files: format detection, YAML safety limits, presets and shadowing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapter.domain.errors import RuleError
from adapter.rules import load_rules, load_rules_text
from adapter.rules.loader import MAX_DEPTH, MAX_FILE_BYTES
from adapter.rules.scoping import averages_at_top_level

FIXTURES = Path(__file__).parent / "fixtures" / "rules"


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("metrics: []\n", "native"),
        ("rules: []\n", "prometheus-adapter"),
        ("externalRules: []\n", "prometheus-adapter"),
        ("resourceRules: {}\n", "prometheus-adapter"),
        ("rules: {default: false}\n", "prometheus-adapter"),
    ],
)
def test_format_is_detected(text: str, fmt: str) -> None:
    loaded = load_rules_text(text, filename="x.yaml", presets=False)
    assert loaded.format == fmt
    assert loaded.file == "x.yaml"
    assert loaded.rules == ()


@pytest.mark.parametrize(
    "text",
    ["", "42\n", "- a\n", "foo: 1\n", "metrics: {}\n", "metrics: []\nrules: []\n"],
)
def test_anything_else_is_refused_naming_the_file(text: str) -> None:
    with pytest.raises(RuleError, match=r"^file odd\.yaml: ") as info:
        load_rules_text(text, filename="odd.yaml")
    assert info.value.file == "odd.yaml"


def test_yaml_error_names_file_and_line() -> None:
    text = "metrics:\n  - name: a\n    query: [unclosed\n"
    with pytest.raises(RuleError, match=r"file bad.yaml: invalid YAML at line \d+") as info:
        load_rules_text(text, filename="bad.yaml")
    assert info.value.file == "bad.yaml"


def test_prometheus_adapter_config_is_strict_at_top_level() -> None:
    with pytest.raises(RuleError, match="unknown top-level keys"):
        load_rules_text("rules: []\nextraRules: []\n", filename="pa.yaml")


def test_helm_values_are_strict_under_rules_and_warn_about_the_rest() -> None:
    with pytest.raises(RuleError, match="unknown keys") as info:
        load_rules_text("rules: {default: false, externl: []}\n", filename="v.yaml")
    assert info.value.field == "rules"
    loaded = load_rules_text(
        "prometheus: {url: http://x}\nrules: {default: true, custom: [], existing: cm}\n",
        filename="v.yaml",
        presets=False,
    )
    assert loaded.warnings == (
        "v.yaml: chart values ['prometheus'] do not configure rules; ignored",
        "v.yaml#rules.default: the chart's default rules are not included; write the ones you "
        "need under rules.custom",
        "v.yaml#rules.existing: not supported by this adapter; ignored",
    )


def test_helm_default_must_be_boolean() -> None:
    with pytest.raises(RuleError) as info:
        load_rules_text("rules: {default: 'yes'}\n", filename="v.yaml")
    assert info.value.field == "rules.default"


def test_rule_lists_must_be_lists() -> None:
    with pytest.raises(RuleError) as info:
        load_rules_text("externalRules: {a: 1}\n", filename="pa.yaml")
    assert info.value.field == "externalRules"


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("metrics: []\n" + "#" * MAX_FILE_BYTES + "\n")
    with pytest.raises(RuleError, match="larger than"):
        load_rules(path)
    with pytest.raises(RuleError, match="larger than"):
        load_rules_text(path.read_text(), filename="big.yaml")


def test_nesting_limit() -> None:
    deep = "metrics: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(RuleError, match="nested deeper"):
        load_rules_text(deep, filename="deep.yaml")


def test_very_deep_nesting_does_not_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RuleError):
        load_rules_text(deep, filename="deep.yaml")


def test_alias_bomb_is_refused() -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append("metrics: *a8")
    with pytest.raises(RuleError, match="YAML nodes"):
        load_rules_text("\n".join(lines) + "\n", filename="bomb.yaml")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read") as info:
        load_rules(tmp_path / "missing.yaml")
    assert info.value.file == str(tmp_path / "missing.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"metrics: []\n# caf\xe9\n")
    with pytest.raises(RuleError, match="not UTF-8"):
        load_rules(path)


def test_python_tags_are_not_executed() -> None:
    with pytest.raises(RuleError, match="invalid YAML"):
        load_rules_text("metrics: !!python/object/apply:os.system ['true']\n", filename="x.yaml")


def test_native_rule_shadows_preset_with_a_warning() -> None:
    loaded = load_rules(FIXTURES / "native.yaml")
    assert (
        "preset:external/jetstream_prefill_backlog_size: shadowed by a rule in "
        in (loaded.warnings[0])
    )
    external = [r for r in loaded.rules if r.kind == "external"]
    owners = [r.id for r in external if "jetstream_prefill_backlog_size" in r.describe()]
    assert "preset:external/jetstream_prefill_backlog_size" not in owners
    # The pods preset of the same name is a different metric and stays.
    assert any(r.id == "preset:pods/jetstream_prefill_backlog_size" for r in loaded.rules)
    # User rules come first: they win any clash decided later (discovery).
    sources = [r.source for r in loaded.rules]
    assert sources == sorted(sources, key=lambda s: s == "preset")


def test_presets_can_be_left_out() -> None:
    loaded = load_rules(FIXTURES / "native.yaml", presets=False)
    assert all(r.source == "native" for r in loaded.rules)
    assert not any("shadowed" in w for w in loaded.warnings)


def test_load_rules_accepts_str_paths() -> None:
    loaded = load_rules(str(FIXTURES / "seed-values.yaml"), presets=False)
    assert loaded.file == str(FIXTURES / "seed-values.yaml")
    assert len(loaded.rules) == 3


@pytest.mark.parametrize(
    ("query", "averages"),
    [
        ("avg(x)", True),
        ("avg by (pod) (x)", True),
        ("avg(x) by (pod)", True),
        ("avg_over_time(x[5m])", True),
        ("avg(a) / avg(b)", True),
        ("(avg(x))", True),
        ("-avg(x)", True),
        ("round(avg(x))", True),
        ("sum(x) / avg(y)", True),
        ("sum(x)", False),
        ("sum(avg by (pod) (x))", False),
        ("max_over_time(avg(x)[5m:])", False),
        ("sum(avg_over_time(x[5m]))", False),
        ("x", False),
        ("not valid (", False),
    ],
)
def test_average_detection(query: str, averages: bool) -> None:
    assert averages_at_top_level(query) is averages


def test_every_external_average_warns_once() -> None:
    text = yaml.safe_dump(
        {
            "metrics": [
                {"name": "a", "type": "external", "query": "avg(x)"},
                {"name": "b", "type": "external", "query": "sum(x)"},
                {"name": "c", "type": "external", "query": "avg_over_time(x[1m])"},
            ]
        }
    )
    loaded = load_rules_text(text, filename="r.yaml", presets=False)
    assert [w.split(":")[0] for w in loaded.warnings] == ["r.yaml#metrics[0]", "r.yaml#metrics[2]"]
