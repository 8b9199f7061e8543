"""docs/configuration.md's account of the object cache's RBAC is what ships and what happens:
the table of resources the shipped ClusterRole lets the adapter list and watch is exactly what
deploy/base and the chart grant; the quoted refusal is the message the adapter builds; the
kustomize overlay it shows renders (``kubectl kustomize``) a role with the added rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.domain.models import GroupResource
from adapter.kube.connection import KubernetesForbiddenError
from adapter.kube.objects import _raise_list_failure
from tests.support.manifests import helm_template

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
DOC = (ROOT / "docs" / "configuration.md").read_text()
ROLE = "llm-metrics-adapter-resource-reader"


def _watchable(rules: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (group, resource)
        for rule in rules
        if {"list", "watch"} <= set(rule["verbs"])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def _section() -> str:
    start = DOC.index("The ClusterRole (deploy/ and the chart) grants")
    return DOC[start : DOC.index("### Served metrics", start)]


def _doc_table() -> set[tuple[str, str]]:
    rows = [line for line in _section().splitlines() if line.startswith("| ")][1:]
    out: set[tuple[str, str]] = set()
    for row in rows:
        group_cell, resources_cell = (c.strip() for c in row.strip("|").split(" | "))
        group = "" if group_cell.startswith("core") else group_cell.strip("`")
        out |= {(group, r) for r in re.findall(r"`([a-z]+)`", resources_cell)}
    return out


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.S)


def test_the_table_is_exactly_what_deploy_and_the_chart_let_the_adapter_watch() -> None:
    table = _doc_table()
    assert ("", "pods") in table and ("batch", "jobs") in table
    base = yaml.safe_load((BASE / "clusterrole-resource-reader.yaml").read_text())
    assert _watchable(base["rules"]) == table
    rendered = helm_template({})
    assert isinstance(rendered, list)
    [chart] = [
        o
        for o in rendered
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-resource-reader")
    ]
    assert _watchable(chart["rules"]) == table


def test_the_quoted_refusal_is_the_adapters_message() -> None:
    [quoted] = _blocks("text")
    with pytest.raises(KubernetesForbiddenError) as caught:
        _raise_list_failure(
            GroupResource("daemonsets", "apps"), "watch-daemonsets.apps: HTTP 403 Forbidden"
        )
    assert caught.value.code == 500
    assert caught.value.message == quoted.strip()


def test_the_chart_value_shown_is_the_charts() -> None:
    chart_block = next(b for b in _blocks("yaml") if b.startswith("rbac:"))
    values = yaml.safe_load(chart_block)
    rendered = helm_template(values)
    assert isinstance(rendered, list)
    [role] = [
        o
        for o in rendered
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-resource-reader")
    ]
    assert ("cheese.io", "brands") in _watchable(role["rules"])


def test_the_kustomize_overlay_adds_the_rule(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (with its built-in kustomize) is needed for this test"
    overlay_block = next(b for b in _blocks("yaml") if "kind: Kustomization" in b)
    overlay = yaml.safe_load(overlay_block)
    assert overlay["resources"] == ["../../deploy/base"]
    # The overlay as a user places it: two levels below a directory holding deploy/base.
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    where = tmp_path / "overlays" / "widened"
    where.mkdir(parents=True)
    (where / "kustomization.yaml").write_text(overlay_block)
    done = subprocess.run(
        [kubectl, "kustomize", str(where)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [role] = [
        o
        for o in yaml.safe_load_all(done.stdout)
        if o and o["kind"] == "ClusterRole" and o["metadata"]["name"] == ROLE
    ]
    base = yaml.safe_load((BASE / "clusterrole-resource-reader.yaml").read_text())
    assert role["rules"][:-1] == base["rules"]
    assert role["rules"][-1] == {
        "apiGroups": ["apps"],
        "resources": ["daemonsets"],
        "verbs": ["list", "watch"],
    }
