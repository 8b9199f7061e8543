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
    policy = (root / "deploy/examples/scrape/networkpolicy.yaml").read_text()
    assert "port: 9988" in policy and "port 9988" in doc
