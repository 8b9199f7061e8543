"""Generated and hostile rules files against the loader: a RuleSet or a clear ConfigError, within
bounded time and memory, for anything a user (or an attacker with write access to the ConfigMap)
can put in the file. Unit tests cover the named limits one by one (tests/unit/test_rules_loader.py);
this tier throws volume and shape at them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.domain.errors import ConfigError
from adapter.rules.loader import RuleSet, load_rules_text
from tests.fuzz.counts import PEAKS, count

_SETTINGS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300
)
_TIME_LIMIT = 2.0  # seconds one load of a generated file may take
# Seconds for the hostile files: 200,000 nested brackets take PyYAML ~3.5 s to refuse on this
# 2-core machine (linear in the input, bounded by the 1 MiB size limit).
_HOSTILE_TIME_LIMIT = 8.0
_MEMORY_LIMIT = 64 * 1024 * 1024  # bytes of peak Python allocation during one load

NATIVE = {
    "metrics": [
        {
            "name": "prefill_backlog",
            "type": "external",
            "query": "sum(jetstream_prefill_backlog_size)",
        },
        {
            "name": "queue_per_pod",
            "type": "pods",
            "query": "sum by (pod) (num_requests_waiting)",
            "window": 60,
        },
        {
            "name": "backlog_by_deployment",
            "type": "object",
            "resource": "deployments.apps",
            "query": "sum by (deployment) (jetstream_prefill_backlog_size)",
        },
    ]
}
PROMETHEUS_ADAPTER = {
    "rules": [
        {
            "seriesQuery": 'jetstream_prefill_backlog_size{namespace!="",pod!=""}',
            "resources": {
                "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
            },
            "name": {"matches": "^(.*)$", "as": "${1}"},
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        }
    ],
    "externalRules": [
        {
            "seriesQuery": '{__name__=~"jetstream_.*"}',
            "resources": {"namespaced": True, "template": "<<.Resource>>"},
            "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>})",
        }
    ],
}

_HOSTILE_STRINGS = (
    "sum(",
    "}{",
    '"} or vector(1) #',
    "<<.Series",
    "<<.Nope>>",
    "<<range .X>><<end>>",
    "{{ .Series }}",
    "$1$2${99}",
    "(?P<x",
    "[",
    "",
    " ",
    "\x00",
    "é" * 300,
    "a" * 70_000,
    "-1",
    "1e309",
    "deployments.apps",
    "pods",
    "*",
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_HOSTILE_STRINGS),
    st.text(max_size=20),
)
_KEYS = (
    "metrics",
    "rules",
    "externalRules",
    "resourceRules",
    "name",
    "type",
    "query",
    "resource",
    "window",
    "clusterScoped",
    "seriesQuery",
    "metricsQuery",
    "resources",
    "overrides",
    "template",
    "matches",
    "as",
    "default",
    "custom",
    "external",
    "backend",
)
_documents = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=30,
)


def _load(text: str, *, time_limit: float = _TIME_LIMIT) -> RuleSet | ConfigError:
    """Load ``text``; return the RuleSet or the ConfigError. Any other exception fails the test."""
    count("rules")
    started = time.monotonic()
    try:
        result: RuleSet | ConfigError = load_rules_text(text, filename="fuzz.yaml", presets=False)
    except ConfigError as exc:
        result = exc
    if isinstance(result, ConfigError):
        assert result.message.strip(), "a ConfigError without a message"
        assert "fuzz.yaml" in result.message, f"the error does not name the file: {result.message}"
    elapsed = time.monotonic() - started
    assert elapsed < time_limit, f"loading took {elapsed:.1f}s: {text[:200]!r}"
    return result


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=10_000)


@_SETTINGS
@given(doc=_documents)
def test_generated_documents(doc: Any) -> None:
    _load(_dump(doc))


def _mutate(doc: Any, path: list[int], value: Any) -> Any:
    """Replace the node reached by walking ``path`` (indices mod the width) with ``value``."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        keys = list(doc)
        key = keys[path[0] % len(keys)]
        return {**doc, key: _mutate(doc[key], path[1:], value)}
    index = path[0] % len(doc)
    return [*doc[:index], _mutate(doc[index], path[1:], value), *doc[index + 1 :]]


@_SETTINGS
@given(
    base=st.sampled_from((NATIVE, PROMETHEUS_ADAPTER)),
    path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6),
    value=_documents,
)
def test_one_field_of_a_valid_file_replaced(
    base: dict[str, Any], path: list[int], value: Any
) -> None:
    """Valid files with one node replaced by anything: wrong types, bad PromQL, bad templates."""
    result = _load(_dump(_mutate(base, path, value)))
    if isinstance(result, RuleSet):
        assert all(rule.id for rule in result.rules)


@settings(_SETTINGS, max_examples=300)
@given(text=st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _load(text)


def _alias_bomb(levels: int, width: int) -> str:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"metrics: *a{levels - 1}"]) + "\n"


HOSTILE = {
    "alias bomb 9x10": _alias_bomb(9, 10),
    "alias bomb 20x2": _alias_bomb(20, 2),
    "alias bomb 6x40": _alias_bomb(6, 40),
    "alias in a mapping": "x: &x {a: 1, b: [1,2,3]}\n"
    + "metrics: ["
    + ", ".join(["*x"] * 5000)
    + "]\n",
    "deep lists": "[" * 200_000 + "]" * 200_000,
    "deep mappings": "a: " * 50_000 + "1\n",
    "deep flow mappings": "{a: " * 30_000 + "1" + "}" * 30_000,
    "huge file": "metrics:\n" + "  - {name: m, type: external, query: up}\n" * 40_000,
    "one huge line": "metrics: [" + "x" * 2_000_000 + "]",
    "just under the size limit": "# " + "x" * (1024 * 1024 - 100) + "\nmetrics: []\n",
    "many rules": "metrics:\n"
    + "".join(
        f"  - {{name: m{i}, type: external, query: 'sum(up{{a=\"{i}\"}})'}}\n" for i in range(3000)
    ),
    "python tag": "metrics: !!python/object/apply:os.system ['true']\n",
    "binary tag": "metrics: !!binary AAAA\n",
    "set tag": "metrics: !!set {a, b}\n",
    "timestamp key": "2001-01-01: x\nmetrics: []\n",
    "integer keys": "metrics: [{1: 2}]\n",
    "merge key": "base: &b {type: external}\nmetrics: [{<<: *b, name: m, query: up}]\n",
    "bom": "\ufeffmetrics: []\n",
    "nul": "metrics: [\x00]\n",
    "tabs": "metrics:\n\t- name: x\n",
    "duplicate keys": "metrics: []\nmetrics: [{name: m, type: external, query: up}]\n",
    "multi document": "metrics: []\n---\nmetrics: []\n",
    "bad promql": "metrics: [{name: m, type: external, query: 'sum(up'}]\n",
    "injection in query": "metrics: [{name: m, type: pods, query: 'up{pod=\"x\"} or vector(1)'}]\n",
    "huge window": "metrics: [{name: m, type: pods, query: up, window: 1e400}]\n",
    "negative window": "metrics: [{name: m, type: pods, query: up, window: -5}]\n",
    "bad template": "rules: [{seriesQuery: up, metricsQuery: '<<.Series'}]\n",
    "template range bomb": "rules: [{seriesQuery: up, metricsQuery: '"
    + "<<range .LabelMatchers>>" * 200
    + "x"
    + "<<end>>" * 200
    + "'}]\n",
    "catastrophic regex": "rules: [{seriesQuery: up, name: {matches: '(a+)+$', as: x}, metricsQuery: '<<.Series>>'}]\n",
    "bad regex": "rules: [{seriesQuery: up, name: {matches: '(?P<', as: x}, metricsQuery: up}]\n",
    "helm values": "rules:\n  default: maybe\n  custom: 7\n",
}


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert match is not None, f"/proc/self/status has no {field}"
    return int(match.group(1))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_bounded(name: str) -> None:
    """Time, and peak memory as the kernel sees it: the resident-set high-water mark is reset
    (``/proc/self/clear_refs``), the file loaded, and the new peak compared with the RSS before.
    (tracemalloc would slow PyYAML twenty-fold on the deep files.)"""
    text = HOSTILE[name]
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    _load(text, time_limit=_HOSTILE_TIME_LIMIT)
    grown = (_status_kib("VmHWM") - before) * 1024
    PEAKS[f"rules file: {name}"] = grown
    assert grown < _MEMORY_LIMIT, f"{name}: loading grew the process by {grown} bytes"
