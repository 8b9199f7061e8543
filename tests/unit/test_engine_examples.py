"""deploy/examples/engines: one example HPA per engine, on metrics the presets serve.

The e2e tier server-side dry-runs every file under deploy/examples (this directory included,
``tests/e2e/test_manifests_dry_run.py``); here the files are checked offline against the
presets themselves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.presets import served_hpa_metrics

ENGINES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "engines"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LATENCY = {"llm_time_to_first_token_p95_seconds", "llm_time_per_output_token_p95_seconds"}

# file → the engine whose metrics it reads (every engine has one)
FILES = {
    "hpa-vllm.yaml": "vllm",
    "hpa-sglang.yaml": "sglang",
    "hpa-tgi.yaml": "tgi",
    "hpa-triton-trtllm.yaml": "triton-trtllm",
    "hpa-trtllm-serve.yaml": "trtllm-serve",
    "hpa-nim.yaml": "nim",
    "hpa-jetstream.yaml": "jetstream",
    "hpa-latency-ttft-p95.yaml": "vllm",
}


def _load(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((ENGINES_DIR / name).read_text()) if d]
    assert len(docs) == 1, name
    doc: dict[str, Any] = docs[0]
    return doc


def test_one_example_per_engine() -> None:
    assert {p.name for p in ENGINES_DIR.glob("*.yaml")} == set(FILES)
    from sim.engines import ENGINES

    assert set(FILES.values()) == set(ENGINES)


@pytest.mark.parametrize("name", sorted(FILES))
def test_example_is_an_hpa_on_served_metrics(name: str) -> None:
    hpa = _load(name)
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert hpa["metadata"]["namespace"] == "default"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    served = served_hpa_metrics()
    text = (ENGINES_DIR / name).read_text()
    assert "# Scales on:" in text and "# Target" in text
    for metric in hpa["spec"]["metrics"]:
        kind = metric["type"]
        block = metric[kind.lower()]
        assert set(block) == {"metric", "target"}, name
        metric_name = block["metric"]["name"]
        assert (kind, metric_name) in served, f"{name}: {kind} {metric_name} is not a preset"
        target = block["target"]
        # Latency percentiles are one namespace-wide value: Value targets; the rest per replica.
        if metric_name in LATENCY:
            assert target["type"] == "Value" and set(target) == {"type", "value"}
        else:
            assert target["type"] == "AverageValue" and set(target) == {"type", "averageValue"}
        for value in block["metric"].get("selector", {}).get("matchLabels", {}).values():
            assert _LABEL_VALUE.match(value), f"{name}: {value!r} is not a label value"
        if kind == "External":
            assert re.search(r"\bTOTAL\b", text) or metric_name in LATENCY, name


def test_triton_example_selects_one_request_type() -> None:
    [metric] = _load("hpa-triton-trtllm.yaml")["spec"]["metrics"]
    assert metric["pods"]["metric"]["selector"] == {"matchLabels": {"request_type": "waiting"}}
