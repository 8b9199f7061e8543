"""The Grafana dashboard: valid JSON, a Prometheus data source variable, every panel's PromQL
parses and reads only metrics the adapter really exports (taken from a live ``Telemetry``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapter.domain.errors import QueryError
from adapter.observability.telemetry import Telemetry
from adapter.promql import selectors

DASHBOARD = Path(__file__).parents[2] / "deploy" / "dashboards" / "llm-metrics-adapter.json"

# Grafana's variables, replaced by values of the same kind before parsing.
_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${namespace}": ".*",
    "$namespace": ".*",
}

REQUIRED_METRICS = {
    # Each panel family the dashboard must show, by one metric it must read.
    "request rate by code": "llm_metrics_adapter_requests_total",
    "request latency": "llm_metrics_adapter_request_duration_seconds_bucket",
    "backend queries and errors": "llm_metrics_adapter_backend_queries_total",
    "backend latency": "llm_metrics_adapter_backend_query_duration_seconds_bucket",
    "cache hit ratio and single-flight shares": "llm_metrics_adapter_cache_requests_total",
    "value age": "llm_metrics_adapter_value_age_seconds_bucket",
    "stale answers": "llm_metrics_adapter_stale_answers_total",
    "circuit state": "llm_metrics_adapter_backend_circuit_state",
    "rule reloads": "llm_metrics_adapter_rule_reloads_total",
    "auth decisions": "llm_metrics_adapter_auth_decisions_total",
    "served metrics": "llm_metrics_adapter_served_metrics",
}


def exported_names() -> set[str]:
    """Every series name a scrape of the adapter can contain."""
    names: set[str] = set()
    for family in Telemetry().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        elif family.type == "gauge":
            names.add(family.name)
        else:
            raise AssertionError(f"unexpected metric type {family.type} of {family.name}")
    return names


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in doc["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows hold their panels
    return out


def expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in panels(doc)
        for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    for name, value in _VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def test_dashboard_shape() -> None:
    doc = load()
    assert doc["schemaVersion"] >= 36 and doc["title"] and doc["uid"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(doc):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def problems(exprs: list[tuple[str, str]], exported: set[str]) -> tuple[list[str], set[str]]:
    """What is wrong with ``(panel title, expr)`` pairs, and the metric names they read."""
    found: list[str] = []
    read: set[str] = set()
    for title, expr in exprs:
        try:
            vectors = selectors(substitute(expr))
        except QueryError as exc:
            found.append(f"panel {title!r}: {expr!r} does not parse: {exc.message}")
            continue
        if not vectors:
            found.append(f"panel {title!r} reads no metric")
        for selector in vectors:
            if selector.name not in exported:
                found.append(f"panel {title!r} reads {selector.name!r}, not exported")
            read.add(selector.name or "")
    return found, read


def test_every_query_parses_and_reads_only_exported_metrics() -> None:
    exprs = expressions(load())
    assert len(exprs) >= len(REQUIRED_METRICS)
    found, read = problems(exprs, exported_names())
    assert not found
    missing = {what: name for what, name in REQUIRED_METRICS.items() if name not in read}
    assert not missing, f"no panel shows {missing}"


def test_namespace_filter_is_on_every_selector() -> None:
    # The dashboard serves several adapters in one project: every selector is filtered.
    for title, expr in expressions(load()):
        for selector in selectors(substitute(expr)):
            names = {m.label for m in selector.matchers}
            assert "namespace" in names, f"panel {title!r}: {selector.name} is not filtered"


def test_the_checker_rejects_bad_queries() -> None:
    # The check above must be able to fail: a made-up name, a syntax error, no metric at all.
    found, _ = problems(
        [
            ("made up", "sum(rate(llm_metrics_adapter_made_up_total[$__rate_interval]))"),
            ("broken", "sum(rate(llm_metrics_adapter_requests_total[5m])"),
            ("constant", "vector(1)"),
            ("good", "llm_metrics_adapter_served_metrics"),
        ],
        exported_names(),
    )
    assert len(found) == 3
    assert "made_up" in found[0] and "does not parse" in found[1] and "no metric" in found[2]
