"""The pod-scrape path's figures stay in docs/benchmarks.md: ``bench/report.py`` writes
``bench/scrape.md`` into every report it generates, and the committed report holds it verbatim
with every measure the scrape path is held to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report

ROWS = (
    "| CPU per scrape |",
    "| 1,000 pods, one scrape each per 15 s |",
    "| scrapes per second (2 concurrent) |",
    "| 2 engines, 48 samples",
    "| Prometheus (15 s scrape), default cache |",
    "| Prometheus (15 s scrape), `--cache-ttl 0` |",
    "| `--scrape-pods` |",
    "| served value age with scraping, p99 |",
)


def test_the_section_names_every_measure_with_a_figure() -> None:
    text = report.SCRAPE.read_text(encoding="utf-8")
    assert text.startswith("## The pod-scrape path (`--scrape-pods`)\n")
    for row in ROWS:
        lines = [line for line in text.splitlines() if line.startswith(row)]
        assert len(lines) == 1, row
        cells = [c.strip() for c in lines[0].strip("|").split("|")[1:]]
        assert any(any(ch.isdigit() for ch in c) for c in cells), lines[0]
    for source in ("bench.scrape_cost", "bench.exposition_parse", "test_scrape_reaction.py"):
        assert source in text


def test_the_committed_report_holds_the_section() -> None:
    doc = report.DOC.read_text(encoding="utf-8")
    assert report.SCRAPE.read_text(encoding="utf-8").rstrip() in doc


def test_a_regenerated_report_keeps_the_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = json.loads((report.ROOT / "docs" / "benchmarks" / "results.json").read_text())
    monkeypatch.setattr(report, "DOC", tmp_path / "benchmarks.md")
    monkeypatch.setattr(report, "plots", lambda r, out_dir: [])
    written = report.write(results, out_dir=tmp_path / "benchmarks").read_text(encoding="utf-8")
    section = report.SCRAPE.read_text(encoding="utf-8").rstrip()
    assert section in written
    assert written.index(section) < written.index("## Method")


def test_the_stated_scrape_cost_defaults_are_the_benchmarks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import scrape_cost

    seen: list[tuple[int, int, int]] = []

    async def measure(pods: int, rounds: int, engines: int) -> dict[str, float]:
        seen.append((pods, rounds, engines))
        return {}

    monkeypatch.setattr(scrape_cost, "measure", measure)
    scrape_cost.main([])
    pods, rounds, engines = seen[0]
    assert f"{pods} scrape targets × {rounds} rounds" in report.SCRAPE.read_text(encoding="utf-8")
    assert f"with {engines} engines" in report.SCRAPE.read_text(encoding="utf-8")


def test_the_stated_latency_defaults_and_ways_are_the_benchmarks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import scrape_latency

    seen: list[tuple[int, int]] = []

    def measure(requests: int, pods: int) -> dict[str, tuple[float, float]]:
        seen.append((requests, pods))
        return {}

    monkeypatch.setattr(scrape_latency, "measure", measure)
    scrape_latency.main([])
    text = report.SCRAPE.read_text(encoding="utf-8")
    requests, pods = seen[0]
    assert f"{requests} requests per way, {pods} simulated JetStream pods" in text
    assert len(scrape_latency.WAYS) == 4
    assert scrape_latency.WAYS["--scrape-pods, every request scrapes"] == {
        "scrape_pods": True,
        "scrape_min_interval": 0.0,
    }
    assert "python -m bench.scrape_latency" in (report.ROOT / "docs" / "scrape.md").read_text()
