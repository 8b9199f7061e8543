"""--scrape-targets: what the file may say, and the clear error for everything else."""

from __future__ import annotations

import pytest

from adapter.domain.errors import ConfigError
from adapter.scrape.targets import load_targets, parse_targets


def test_a_valid_file() -> None:
    [target] = parse_targets(
        "- {namespace: team-a, pod: js-0, url: 'http://10.0.0.1:9100/metrics', labels: {container: c}}"
    )
    assert (target.key, target.endpoint, target.labels) == (
        "team-a/js-0",
        "10.0.0.1:9100",
        {"container": "c"},
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{}", "expected a list"),
        ("- [1]", "must be a mapping"),
        ("- {namespace: a, pod: p, url: 'http://h/m', port: 1}", "unknown field"),
        ("- {namespace: A_B, pod: p, url: 'http://h/m'}", "not a Kubernetes name"),
        ("- {namespace: a, pod: p, url: 'file:///etc/passwd'}", "http:// or https://"),
        ("- {namespace: a, pod: p, url: 'http://u:pw@h/m'}", "no credentials"),
        ("- {namespace: a, pod: p, url: 'http://h/m?x=1'}", "no credentials, query"),
        ("- {namespace: a, pod: p, url: 'http://h/m', labels: {namespace: b}}", "not allowed"),
        ("- {namespace: a, pod: p, url: 'http://h/m', labels: [x]}", "must be a mapping"),
        (
            "- {namespace: a, pod: p, url: 'http://h/m'}\n- {namespace: a, pod: p, url: 'http://h/n'}",
            "twice",
        ),
        ("- {namespace: a, pod: p, url: [", "not YAML"),
    ],
)
def test_bad_files_are_refused_with_the_entry_named(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_targets(text, filename="t.yaml")
    assert words in str(info.value) and "t.yaml" in str(info.value)
    assert "pw" not in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="--scrape-targets"):
        load_targets("/nonexistent/targets.yaml")


def test_docs_scrape_states_the_code_s_limits_and_names() -> None:
    from pathlib import Path

    import yaml

    from adapter.scrape.exposition import DEFAULT_MAX_BYTES
    from adapter.settings.model import ScrapeSettings

    root = Path(__file__).parents[2]
    doc = " ".join((root / "docs" / "scrape.md").read_text().split())
    assert f"more than {DEFAULT_MAX_BYTES // 2**20} MiB" in doc
    assert f"(default {ScrapeSettings().min_interval:g} s)" in doc
    assert f"`{ScrapeSettings().fallback}` (default)" in doc
    for path in (
        "tests/integration/test_evaluator_differential.py",
        "tests/integration/test_scrape_pods.py",
        "deploy/examples/scrape/networkpolicy.yaml",
        "deploy/examples/scrape/rbac.yaml",
        "tests/e2e/test_scrape_reaction.py",
    ):
        assert f"`{path}`" in doc and (root / path).exists(), path
    policies = list(
        yaml.safe_load_all((root / "deploy/examples/scrape/networkpolicy.yaml").read_text())
    )
    monitors = [
        obj
        for path in sorted((root / "deploy/monitoring").glob("podmonitoring-*.yaml"))
        for obj in yaml.safe_load_all(path.read_text())
        if obj["metadata"]["name"] != "llm-metrics-adapter"
    ]
    assert {m["metadata"]["namespace"] for m in monitors} == {"default", "kube-system"}
    for monitor in monitors:
        # Each shipped PodMonitoring's pods: a policy in its namespace, selecting the same pods,
        # lets the adapter (deploy/base's namespace and labels) reach exactly its metrics ports.
        namespace = monitor["metadata"]["namespace"]
        ports = {e["port"] for e in monitor["spec"]["endpoints"]}
        (policy,) = [
            p
            for p in policies
            if p["metadata"]["namespace"] == namespace
            and p["spec"]["podSelector"] == monitor["spec"]["selector"]
        ]
        adapter = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "custom-metrics"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "llm-metrics-adapter"}},
        }
        (rule,) = [r for r in policy["spec"]["ingress"] if adapter in r.get("from", [])]
        assert {p["port"] for p in rule["ports"]} == ports, namespace
        assert all(f"port {port}" in doc for port in ports), ports
