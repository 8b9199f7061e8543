"""``/debug/metrics`` with ``--scrape-pods`` says, per served metric, where its values come from
(the pods, or the backend) and why; without the flag, every metric names the backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.app import AppFactory, client_for

RULES = """
metrics:
  - name: queue_total
    type: external
    query: sum(jetstream_prefill_backlog_size)
  - name: busiest_queue
    type: external
    query: topk(1, jetstream_prefill_backlog_size)
"""


async def _metrics(ctx: Any) -> dict[str, dict[str, Any]]:
    async with ctx, await client_for(ctx) as c:
        await ctx.registry.refresh()
        response = await c.get("/debug/metrics")
        assert response.status_code == 200, response.text
        return {f"{m['kind']}/{m['name']}": m for m in response.json()["metrics"]}


async def test_each_rule_says_whether_the_pods_or_the_backend_answer_it_and_why(
    make_ctx: AppFactory, tmp_path: Path
) -> None:
    targets = tmp_path / "targets.yaml"
    url = "http://127.0.0.1:9/metrics"
    targets.write_text(yaml.safe_dump([{"namespace": "team-a", "pod": "p", "url": url}]))
    ctx = make_ctx(rules_text=RULES, scrape_pods=True, scrape_targets=str(targets))
    metrics = await _metrics(ctx)
    assert metrics["external/queue_total"]["valuesFrom"] == {
        "from": "pods",
        "why": "the query is in the local evaluator's subset",
    }
    topk = metrics["external/busiest_queue"]["valuesFrom"]
    assert topk["from"] == ctx.provider.backend.name != "scrape"
    assert "topk" in topk["why"], topk
    # The presets the scrape path is built for come from the pods.
    assert metrics["custom/jetstream_prefill_backlog_size"]["valuesFrom"]["from"] == "pods"


async def test_without_scraping_every_rule_names_the_backend(make_ctx: AppFactory) -> None:
    metrics = await _metrics(make_ctx(rules_text=RULES))
    assert {m["valuesFrom"]["from"] for m in metrics.values()} == {"promql"}
    assert {m["valuesFrom"]["why"] for m in metrics.values()} == {"--scrape-pods is off"}
