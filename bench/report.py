"""Turn ``docs/benchmarks/results.json`` into ``docs/benchmarks.md`` and PNG plots.

``python -m bench.report [results.json]`` regenerates the document without rerunning the benchmark.
The hand-written analysis lives in ``bench/findings.md`` and is included verbatim, so a rerun
refreshes every number without losing the explanation.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main", "write"]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
FINDINGS = ROOT / "bench" / "findings.md"


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(theirs: Any, ours: Any, *, higher_better: bool) -> str:
    try:
        t, o = float(theirs), float(ours)
    except (TypeError, ValueError):
        return "–"
    if t <= 0 or o <= 0:
        return "–"
    r = o / t
    return f"{r:.2f}× ({'better' if (r > 1) == higher_better else 'worse'})" if r != 1 else "1.00×"


def _row(label: str, t: Any, o: Any, *, higher_better: bool, digits: int = 1) -> str:
    ratio = _ratio(t, o, higher_better=higher_better)
    return f"| {label} | {_f(t, digits)} | {_f(o, digits)} | {ratio} |"


def _results_table(sc: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario / measure | prometheus-adapter | llm-metrics-adapter | ours ÷ theirs |",
        "|---|---:|---:|---:|",
    ]

    def block(
        title: str, res: dict[str, Any], extra: Callable[[], list[str]] | None = None
    ) -> None:
        t, o = res["theirs"], res["ours"]
        lines.append(f"| **{title}** | | | |")
        lines.append(_row("requests/s", t["rps"], o["rps"], higher_better=True))
        lines.append(
            _row("p50 latency, ms", t["p50_ms"], o["p50_ms"], higher_better=False, digits=2)
        )
        lines.append(
            _row("p99 latency, ms", t["p99_ms"], o["p99_ms"], higher_better=False, digits=2)
        )
        lines.append(
            _row(
                "Prometheus queries per 1000 requests",
                t["queries_per_1000"],
                o["queries_per_1000"],
                higher_better=False,
            )
        )
        lines.append(
            _row(
                "CPU ms per request (adapter process)",
                t["cpu_ms_per_request"],
                o["cpu_ms_per_request"],
                higher_better=False,
                digits=3,
            )
        )
        lines.append(
            _row("peak RSS, MiB", t["peak_rss_mib"], o["peak_rss_mib"], higher_better=False)
        )
        lines.append(f"| errors (non-200 or transport) | {t['errors']} | {o['errors']} | |")
        if o.get("hit_ratio") is not None:
            lines.append(
                f"| answered from the cache (hit or joined in-flight query) | | {o['hit_ratio']:.3f} | |"
            )
        if extra:
            lines.extend(extra())

    if "hpa" in sc:
        block(
            f"HPA pattern, saturated ({sc['hpa']['distinct_queries']} distinct paths, "
            f"{sc['hpa']['connections']} connections)",
            sc["hpa"],
        )
    if "paced" in sc:
        block("HPA pattern, paced (every 15 s, 5 workers)", sc["paced"])
    if "hit64" in sc:
        block("one hot path, 64 connections", sc["hit64"])
    for k in (64, 256):
        key = f"burst{k}"
        if key in sc:
            block(
                f"burst of {k} identical concurrent requests",
                sc[key],
                lambda key=key: [  # type: ignore[misc]
                    f"| backend queries for the burst | {sc[key]['theirs']['backend_queries']} "
                    f"| {sc[key]['ours']['backend_queries']} | |"
                ],
            )
    return lines


def _miss_table(m: dict[str, Any]) -> list[str]:
    return [
        f"Query: `{m['query']}` — 300 sequential requests on one keep-alive connection.",
        "",
        "| path | p50, ms | p99, ms |",
        "|---|---:|---:|",
        f"| raw PromQL, straight to Prometheus (HTTP) | {_f(m['raw']['p50_ms'], 2)} | {_f(m['raw']['p99_ms'], 2)} |",
        f"| ours, cache off (HTTPS + auth caches + query + translation) | {_f(m['ours_nocache']['p50_ms'], 2)} | {_f(m['ours_nocache']['p99_ms'], 2)} |",
        f"| ours, cache hit | {_f(m['ours_hit']['p50_ms'], 2)} | {_f(m['ours_hit']['p99_ms'], 2)} |",
        f"| prometheus-adapter (always a query) | {_f(m['theirs']['p50_ms'], 2)} | {_f(m['theirs']['p99_ms'], 2)} |",
        "",
        f"A cache miss adds **{_f(m['miss_overhead_ms'], 2)} ms** (median) over the raw query.",
    ]


def _growth_table(g: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| series in Prometheus | Prometheus RSS, MiB | theirs RSS / peak, MiB | ours RSS / peak, MiB "
        "| theirs req/s, p99 ms | ours req/s, p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in g:
        t, o = row["theirs"], row["ours"]
        lines.append(
            f"| {row['head_series']:,} | {_f(row.get('prometheus_rss_mib'))} "
            f"| {_f(t['rss_mib'])} / {_f(t['hwm_mib'])} | {_f(o['rss_mib'])} / {_f(o['hwm_mib'])} "
            f"| {_f(t['rps'])}, {_f(t['p99_ms'], 2)} | {_f(o['rps'])}, {_f(o['p99_ms'], 2)} |"
        )
    return lines


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**missed**")


def _targets(r: dict[str, Any]) -> list[str]:
    sc = r["scenarios"]
    rows: list[tuple[str, str, bool | None]] = []
    if "hpa" in sc:
        t, o = sc["hpa"]["theirs"], sc["hpa"]["ours"]
        ratio = o["rps"] / t["rps"] if t["rps"] else float("nan")
        rows.append(
            ("HPA-pattern throughput ≥ 2× prometheus-adapter's", f"{ratio:.2f}×", ratio >= 2)
        )
        p = o["p99_ms"] / t["p99_ms"] if t["p99_ms"] else float("nan")
        rows.append(("HPA-pattern p99 ≤ 0.5× prometheus-adapter's", f"{p:.2f}×", p <= 0.5))
        q, bound = sc["hpa"]["ours"]["backend_queries"], sc["hpa"]["ours_query_bound"]
        rows.append(
            (
                "backend queries ≤ 1 per distinct query per TTL window (saturated HPA run)",
                f"{q} queries, bound {bound}",
                q <= bound,
            )
        )
    if "hit64" in sc:
        p99 = sc["hit64"]["ours"]["p99_ms"]
        rows.append(("cache-hit p99 ≤ 5 ms at 64 concurrent clients", f"{p99:.2f} ms", p99 <= 5))
    ttl = r["config"]["cache_ttl_s"]
    for k in (64, 256):
        if f"burst{k}" in sc:
            res = sc[f"burst{k}"]["ours"]
            # A burst the adapter takes longer than one TTL to serve spans several windows.
            bound = 1 + int(res["seconds"] // ttl)
            rows.append(
                (
                    f"burst of {k}: ≤ 1 backend query per TTL window",
                    f"{res['backend_queries']} in {res['seconds']:.1f} s (bound {bound})",
                    res["backend_queries"] <= bound,
                )
            )
    if sc.get("growth"):
        g = sc["growth"]
        peak = max(row["ours"]["peak_rss_mib"] for row in g)
        top = g[-1]["head_series"]
        rows.append(
            (
                f"peak RSS ≤ 120 MiB with {top:,} series",
                f"{peak:.1f} MiB",
                peak <= 120 if top >= 900_000 else None,
            )
        )
        lo, hi = g[0]["ours"]["rss_mib"], g[-1]["ours"]["rss_mib"]
        growth = (hi - lo) / lo if lo else float("nan")
        rows.append(
            (
                f"RSS flat from {g[0]['head_series']:,} to {top:,} series (≤ 10 % growth)",
                f"{lo:.1f} → {hi:.1f} MiB ({100 * growth:+.1f} %)",
                growth <= 0.10,
            )
        )
    if "miss" in sc:
        d = sc["miss"]["miss_overhead_ms"]
        rows.append(("a cache miss adds ≤ 2 ms median over its raw query", f"{d:.2f} ms", d <= 2))
    lines = ["| target | measured | verdict |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {_verdict(c)} |" for a, b, c in rows]
    return lines


def _profile(p: dict[str, Any], what: str) -> list[str]:
    if "error" in p:
        return [f"Profile not taken: {p['error']}"]
    lines = [
        f"py-spy, {p['samples']} samples at 200 Hz: {what}.",
        "",
        "Self time (the frame on top of the stack):",
        "",
        "| % | function |",
        "|---:|---|",
    ]
    lines += [f"| {pct} | `{name}` |" for name, pct in p["self"][:12]]
    lines += [
        "",
        "Inclusive time in the adapter's own modules:",
        "",
        "| % | function |",
        "|---:|---|",
    ]
    lines += [f"| {pct} | `{name}` |" for name, pct in p["inclusive_adapter"][:15]]
    return lines


def plots(r: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the PNGs; return their file names. Skipped (empty) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[str] = []
    sc = r["scenarios"]
    loads = [
        (k, label)
        for k, label in (
            ("paced", "paced HPA\n5 workers"),
            ("hpa", "saturated HPA\n16 conns"),
            ("hit64", "hot path\n64 conns"),
            ("burst64", "burst 64"),
            ("burst256", "burst 256"),
        )
        if k in sc
    ]
    if loads:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        x = range(len(loads))
        for ax, key, title in (
            (axes[0], "p50_ms", "p50 latency"),
            (axes[1], "p99_ms", "p99 latency"),
        ):
            w = 0.38
            ax.bar(
                [i - w / 2 for i in x],
                [sc[k]["theirs"][key] for k, _ in loads],
                w,
                label="prometheus-adapter",
                color="#d62728",
            )
            ax.bar(
                [i + w / 2 for i in x],
                [sc[k]["ours"][key] for k, _ in loads],
                w,
                label="llm-metrics-adapter",
                color="#1f77b4",
            )
            ax.set_xticks(list(x), [label for _, label in loads], fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("ms (log)")
            ax.set_title(title)
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("Latency against load (one run, same machine, same Prometheus)")
        fig.tight_layout()
        fig.savefig(out_dir / "latency-vs-load.png", dpi=110)
        plt.close(fig)
        made.append("latency-vs-load.png")
    g = sc.get("growth") or []
    if g:
        xs = [row["head_series"] for row in g]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        ax = axes[0]
        ax.plot(
            xs,
            [row["theirs"]["peak_rss_mib"] for row in g],
            "o-",
            color="#d62728",
            label="prometheus-adapter",
        )
        ax.plot(
            xs,
            [row["ours"]["peak_rss_mib"] for row in g],
            "o-",
            color="#1f77b4",
            label="llm-metrics-adapter",
        )
        ax.axhline(120, ls="--", color="gray", lw=1, label="target: 120 MiB")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("series in Prometheus (log)")
        ax.set_ylabel("peak RSS during the step, MiB (log)")
        ax.set_title("Adapter memory against series count")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax = axes[1]
        ax.plot(
            xs,
            [row["theirs"]["p99_ms"] for row in g],
            "o-",
            color="#d62728",
            label="prometheus-adapter p99",
        )
        ax.plot(
            xs,
            [row["ours"]["p99_ms"] for row in g],
            "o-",
            color="#1f77b4",
            label="llm-metrics-adapter p99",
        )
        ax.plot(
            xs,
            [row["theirs"]["p50_ms"] for row in g],
            "s--",
            color="#d62728",
            alpha=0.6,
            label="prometheus-adapter p50",
        )
        ax.plot(
            xs,
            [row["ours"]["p50_ms"] for row in g],
            "s--",
            color="#1f77b4",
            alpha=0.6,
            label="llm-metrics-adapter p50",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("series in Prometheus (log)")
        ax.set_ylabel("ms (log)")
        ax.set_title("Saturated HPA pattern latency against series count")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "memory-latency-vs-series.png", dpi=110)
        plt.close(fig)
        made.append("memory-latency-vs-series.png")
    return made


def write(r: dict[str, Any], *, out_dir: Path) -> Path:
    """Write the PNGs into ``out_dir`` and ``docs/benchmarks.md``; return the document's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = plots(r, out_dir)
    m, v, sc, cfg = r["machine"], r["versions"], r["scenarios"], r["config"]
    doc: list[str] = [
        "# Benchmarks: llm-metrics-adapter and prometheus-adapter side by side",
        "",
        "Generated by `make bench` (`bench/run.py`, then `bench/report.py`) on "
        f"{r['started']}; the run took {r['wall_s'] / 60:.1f} minutes. Raw numbers: "
        "[`benchmarks/results.json`](benchmarks/results.json). How to run it and each scenario: "
        "[`bench/README.md`](../bench/README.md).",
        "",
        "## Machine and versions",
        "",
        f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}, "
        f"Python {m['python']}",
        f"- load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}; at end "
        f"{', '.join(f'{x:.2f}' for x in m.get('loadavg_end', ()))}",
        *(f"- {k}: {val}" for k, val in v.items()),
        "",
        "## Targets",
        "",
        *_targets(r),
        "",
        "## Results",
        "",
        "Both adapters ran at the same time against the same Prometheus; each load ran against one "
        f"adapter at a time (prometheus-adapter first). {cfg['hpas']} HPAs × "
        f"{cfg['metrics_per_hpa']} metrics (a Pods metric with a labelSelector and an External "
        f"metric), {r.get('hpa_series', 0):,} HPA series plus bulk series to "
        f"{(sc.get('growth') or [{}])[0].get('head_series', 10_000):,} in Prometheus during the main "
        f"scenarios. Our result cache TTL {cfg['cache_ttl_s']} s; relist/discovery every "
        f"{cfg['relist_s']} s for both.",
        "",
        *_results_table(sc),
        "",
    ]
    if images and "latency-vs-load.png" in images:
        doc += ["![latency against load](benchmarks/latency-vs-load.png)", ""]
    if "miss" in sc:
        doc += ["### What a cache miss costs", "", *_miss_table(sc["miss"]), ""]
    if sc.get("growth"):
        doc += ["### Growth: series in Prometheus", "", *_growth_table(sc["growth"]), ""]
        if "memory-latency-vs-series.png" in images:
            doc += [
                "![memory and latency against series](benchmarks/memory-latency-vs-series.png)",
                "",
            ]
    if "profile" in sc:
        prof = sc["profile"]
        doc += ["### Profiles", ""]
        if "hit" in prof:
            doc += [
                "#### Cache hits",
                "",
                *_profile(
                    prof["hit"],
                    "ours under the saturated HPA pattern, 16 connections (nearly all cache hits)",
                ),
                "",
            ]
        if "miss" in prof:
            doc += [
                "#### Cache misses",
                "",
                *_profile(
                    prof["miss"],
                    "ours with the cache off, the HPA pattern over 4 connections (every request a Prometheus query)",
                ),
                "",
            ]
    if FINDINGS.exists():
        doc += [FINDINGS.read_text(encoding="utf-8").rstrip(), ""]
    DOC.write_text("\n".join(doc), encoding="utf-8")
    print(f">> wrote {DOC} and {len(images)} plot(s) in {out_dir}", flush=True)
    return DOC


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0]) if args else ROOT / "docs" / "benchmarks" / "results.json"
    write(json.loads(path.read_text(encoding="utf-8")), out_dir=path.parent)


if __name__ == "__main__":
    main()
