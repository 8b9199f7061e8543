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
SCRAPE = ROOT / "bench" / "scrape.md"
"""The pod-scrape path's figures (measured outside ``make bench``): kept in every report."""


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
    if f"{r:.2f}" == "1.00":
        return "1.00×"
    return f"{r:.2f}× ({'better' if (r > 1) == higher_better else 'worse'})"


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


NOT_MEASURED = "not measured in this run"


def _num(value: Any) -> float | None:
    """A finite float, or None (missing, NaN, not a number)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _div(a: Any, b: Any) -> float | None:
    x, y = _num(a), _num(b)
    return x / y if x is not None and y is not None and y > 0 else None


def verdict(measured: float | None, target: float, *, at_most: bool, unit: str = "×") -> str:
    """``met``, ``**missed by X**`` (X in the target's unit), or :data:`NOT_MEASURED`."""
    if measured is None or not math.isfinite(measured):
        return NOT_MEASURED
    if (measured <= target) if at_most else (measured >= target):
        return "met"
    gap = abs(measured - target)
    return f"**missed by {gap:.2f}{unit}**"


Row = tuple[str, str, str, str, str]
"""measure, target, measured, ratio (ours ÷ theirs), verdict."""


def _x(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def _rhythm_targets(sc: dict[str, Any]) -> list[Row]:
    name = "HPA rhythm"
    rh = sc.get("rhythm")
    if rh is None:
        return [
            (
                f"{name}, 1,000 HPAs × 2 metrics, steady state: p50 and p99 latency",
                "≤ 0.5×",
                NOT_MEASURED,
                "–",
                NOT_MEASURED,
            ),
            (f"{name}: adapter CPU seconds per minute", "≤ 0.5×", NOT_MEASURED, "–", NOT_MEASURED),
            (
                f"{name}: cache answers (hits + joined in-flight)",
                "≥ 0.95 after warm-up",
                NOT_MEASURED,
                "–",
                NOT_MEASURED,
            ),
            (
                f"{name}: backend queries per minute",
                "≤ one per distinct query per sync period",
                NOT_MEASURED,
                "–",
                NOT_MEASURED,
            ),
            (
                f"{name}: age of served values",
                "≤ prometheus-adapter's + 1 s at p99",
                NOT_MEASURED,
                "–",
                NOT_MEASURED,
            ),
        ]
    t, o = rh["theirs"], rh["ours"]
    r50, r99 = _div(o["p50_ms"], t["p50_ms"]), _div(o["p99_ms"], t["p99_ms"])
    worst = None if r50 is None or r99 is None else max(r50, r99)
    rcpu = _div(o["cpu_s_per_min"], t["cpu_s_per_min"])
    hits = _num(o.get("hit_ratio"))
    q, bound = _num(o["queries_per_min"]), _num(o["query_bound_per_min"])
    # prometheus-adapter stamps its items with the query's evaluation time (its ages stay under
    # 1 s whatever the sample's age), so what it really serves is the newest sample Prometheus
    # holds: the freshness floor measured during its run. Its stamped age is the fallback.
    age_o, age_t = _num(o["age_p99_s"]), _num(t.get("floor_age_p99_s"))
    basis = "newest sample at receive time"
    if age_t is None:
        age_t, basis = _num(t["age_p99_s"]), "its item timestamps"
    return [
        (
            f"{name}, {rh['hpas']:,} HPAs × 2 metrics, steady state: p50 and p99 latency",
            "≤ 0.5×",
            f"p50 {_f(o['p50_ms'], 2)} vs {_f(t['p50_ms'], 2)} ms; p99 {_f(o['p99_ms'], 2)} vs {_f(t['p99_ms'], 2)} ms",
            f"p50 {_x(r50)}, p99 {_x(r99)}",
            verdict(worst, 0.5, at_most=True),
        ),
        (
            f"{name}: adapter CPU seconds per minute",
            "≤ 0.5×",
            f"{_f(o['cpu_s_per_min'], 2)} vs {_f(t['cpu_s_per_min'], 2)} s/min",
            _x(rcpu),
            verdict(rcpu, 0.5, at_most=True),
        ),
        (
            f"{name}: cache answers (hits + joined in-flight)",
            "≥ 0.95 after warm-up",
            "–" if hits is None else f"{hits:.3f}",
            "–",
            verdict(hits, 0.95, at_most=False, unit=""),
        ),
        (
            f"{name}: backend queries per minute",
            f"≤ one per distinct query per sync period ({_f(bound)} /min)",
            f"{_f(q)} vs {_f(t['queries_per_min'])} /min",
            _x(_div(q, t["queries_per_min"])),
            verdict(q, bound, at_most=True, unit=" /min") if bound is not None else NOT_MEASURED,
        ),
        (
            f"{name}: age of served values",
            "≤ prometheus-adapter's + 1 s at p99",
            f"p99 {_f(age_o, 2)} vs {_f(age_t, 2)} s (theirs: {basis})",
            _x(_div(age_o, age_t)),
            verdict(age_o, age_t + 1, at_most=True, unit=" s")
            if age_t is not None
            else NOT_MEASURED,
        ),
    ]


def _load_targets(sc: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    ol = sc.get("openloop")
    at80 = {
        run["side"]: run for run in (ol or {}).get("runs", []) if run["label"].startswith("80 ")
    }
    if "theirs" in at80 and "ours" in at80:
        r = _div(at80["ours"]["p99_ms"], at80["theirs"]["p99_ms"])
        rows.append(
            (
                "open-loop at 80 % of the peer's maximum rate: p99",
                "≤ 0.5×",
                f"{_f(at80['ours']['p99_ms'], 2)} vs {_f(at80['theirs']['p99_ms'], 2)} ms "
                f"at {_f(at80['ours']['target_rate'])} requests/s",
                _x(r),
                verdict(r, 0.5, at_most=True),
            )
        )
    else:
        rows.append(
            (
                "open-loop at 80 % of the peer's maximum rate: p99",
                "≤ 0.5×",
                NOT_MEASURED,
                "–",
                NOT_MEASURED,
            )
        )
    maxima: dict[str, Any] | None
    if "hpa" in sc:
        maxima = {"theirs": sc["hpa"]["theirs"]["rps"], "ours": sc["hpa"]["ours"]["rps"]}
    else:
        maxima = (ol or {}).get("max_rps")
    name = "maximum throughput, saturated HPA pattern"
    if maxima:
        r = _div(maxima["ours"], maxima["theirs"])
        rows.append(
            (
                name,
                "≥ 3×",
                f"{_f(maxima['ours'])} vs {_f(maxima['theirs'])} requests/s",
                _x(r),
                verdict(r, 3, at_most=False),
            )
        )
    else:
        rows.append((name, "≥ 3×", NOT_MEASURED, "–", NOT_MEASURED))
    name = "server CPU per cache hit (10,000 sequential hits on keep-alive)"
    hc = sc.get("hitcpu")
    if hc:
        o, t = _num(hc["ours"]["cpu_ms_per_request"]), hc["theirs"]["cpu_ms_per_request"]
        rows.append(
            (
                name if hc["requests"] == 10_000 else f"{name} [{hc['requests']:,} in this run]",
                "≤ 0.25 ms",
                f"{_f(o, 3)} vs {_f(t, 3)} ms",
                _x(_div(o, t)),
                verdict(o, 0.25, at_most=True, unit=" ms"),
            )
        )
    else:
        rows.append((name, "≤ 0.25 ms", NOT_MEASURED, "–", NOT_MEASURED))
    name = "miss overhead over the raw query (median)"
    m = sc.get("miss")
    if m:
        raw = m["raw"]["p50_ms"]
        ours, theirs = m["ours_nocache"]["p50_ms"] - raw, m["theirs"]["p50_ms"] - raw
        rows.append(
            (
                name,
                "≤ the peer's overhead",
                f"{ours:.2f} vs {theirs:.2f} ms",
                _x(_div(ours, theirs)),
                verdict(ours, theirs, at_most=True, unit=" ms"),
            )
        )
    else:
        rows.append((name, "≤ the peer's overhead", NOT_MEASURED, "–", NOT_MEASURED))
    return rows


def targets_rows(r: dict[str, Any]) -> list[Row]:
    """One row per target of the benchmark's brief, in its order."""
    sc = r["scenarios"]
    rows = _rhythm_targets(sc) + _load_targets(sc)
    growth = sc.get("growth") or []
    measured = NOT_MEASURED
    if growth:
        # This run's growth scenario reads Prometheus, not Google Managed Prometheus: shown for
        # reference, the GMP-mode target stays unmeasured here.
        peak = max(row["ours"]["peak_rss_mib"] for row in growth)
        measured += (
            f" (Prometheus mode: peak {peak:.1f} MiB up to {growth[-1]['head_series']:,} series)"
        )
    rows.append(
        (
            "peak RSS in GMP mode, 1M series in Prometheus",
            "≤ 100 MiB and flat from 10k",
            measured,
            "–",
            NOT_MEASURED,
        )
    )
    rows.append(
        (
            "real-HPA e2e, ≥ 5 load steps: time from step to new `desiredReplicas`, default cache vs `--cache-ttl 0`",
            "≤ +1 s at the median and at the max",
            NOT_MEASURED + " (tests/e2e; see the findings)",
            "–",
            NOT_MEASURED,
        )
    )
    return rows


def _targets(r: dict[str, Any]) -> list[str]:
    lines = [
        "| measure | target | measured (ours vs theirs) | ours ÷ theirs | verdict |",
        "|---|---|---|---:|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in targets_rows(r)]
    return lines


def _rhythm_table(rh: dict[str, Any]) -> list[str]:
    t, o = rh["theirs"], rh["ours"]
    return [
        f"{rh['hpas']:,} HPAs × 2 metrics (a Pods metric with `labelSelector=app=jetstream` in the "
        "HPA's namespace, and an External metric), every HPA every 15 s at its own fixed phase, "
        f"5 workers taking HPAs off a queue and making each HPA's two requests in turn; "
        f"{_f(rh['warmup_s'], 0)} s warm-up, then {_f(rh['seconds'], 0)} s measured, one adapter at a "
        "time on the same Prometheus and kube-apiserver.",
        "",
        "| measure | prometheus-adapter | llm-metrics-adapter | ours ÷ theirs |",
        "|---|---:|---:|---:|",
        f"| requests measured (errors) | {_f(t['requests'])} ({t['errors']}) | {_f(o['requests'])} ({o['errors']}) | |",
        _row("p50 latency, ms", t["p50_ms"], o["p50_ms"], higher_better=False, digits=2),
        _row("p99 latency, ms", t["p99_ms"], o["p99_ms"], higher_better=False, digits=2),
        _row("max latency, ms", t["max_ms"], o["max_ms"], higher_better=False, digits=2),
        _row("schedule lag, max, s", t["lag_max_s"], o["lag_max_s"], higher_better=False, digits=3),
        _row(
            "adapter CPU s per minute",
            t["cpu_s_per_min"],
            o["cpu_s_per_min"],
            higher_better=False,
            digits=2,
        ),
        _row("peak RSS, MiB", t["peak_rss_mib"], o["peak_rss_mib"], higher_better=False),
        _row(
            "Prometheus /api/v1/query per minute",
            t["queries_per_min"],
            o["queries_per_min"],
            higher_better=False,
        ),
        f"| answered from the cache (hit or joined in-flight) | | {_f(o.get('hit_ratio'), 3)} | |",
        *(
            _row(label, t.get(key), o.get(key), higher_better=False, digits=2)
            for label, key in (
                ("age of served values p50, s", "age_p50_s"),
                ("age of served values p99, s", "age_p99_s"),
                ("age of served values max, s", "age_max_s"),
                ("newest sample in Prometheus at receive time, p50, s", "floor_age_p50_s"),
                ("newest sample in Prometheus at receive time, p99, s", "floor_age_p99_s"),
            )
        ),
        f"| load generator CPU, % of one core | {_f(t['client_cpu_pct'])} | {_f(o['client_cpu_pct'])} | |",
        "",
        f"One sync period holds {o['distinct_queries']:,} distinct queries: at most "
        f"{_f(o['query_bound_per_min'])} Prometheus queries per minute if each is asked once per "
        "period. Age = receive time − the item's `timestamp`, which both adapters write in RFC 3339 "
        "with whole seconds, so each age is known to within 1 s (truncated "
        "stamps read up to 1 s older). prometheus-adapter stamps each item with the query's "
        "evaluation time, not the sample's, so its ages stay under a second: the age of what it "
        "serves is the newest sample's, the row below them (receive time − the HPA target's last "
        "scrape, from Prometheus' `/api/v1/targets`), and the age target compares ours with that. "
        "Schedule lag = when a worker took the HPA − when it was due.",
    ]


def _rate(run: dict[str, Any]) -> str:
    """The asked rate, and what vegeta managed to send when that fell short (its CPU ran out)."""
    asked, sent = run["target_rate"], run["rate"]
    return f"{_f(asked)}" if sent >= 0.98 * asked else f"{_f(asked)} (sent {_f(sent)})"


def _openloop_table(ol: dict[str, Any]) -> list[str]:
    mx = ol["max_rps"]
    lines = [
        f"vegeta, {_f(ol['seconds'], 0)} s per rate, the saturated HPA pattern's paths; maximum "
        f"throughput from {mx['source']}: prometheus-adapter {_f(mx['theirs'])}, ours "
        f"{_f(mx['ours'])} requests/s. Latency from each request's scheduled send (no coordinated "
        "omission). `success` counts non-2xx answers and timeouts (10 s) as failures; "
        "prometheus-adapter answers 429 when its in-flight request limit is reached.",
        "",
        "| rate | theirs p50 / p99 / max, ms | theirs success | ours p50 / p99 / max, ms | ours success | p99 ours ÷ theirs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for run in ol["runs"]:
        runs.setdefault(run["label"], {})[run["side"]] = run

    def cell(x: dict[str, Any] | None) -> tuple[str, str]:
        if x is None:
            return "–", "–"
        return (
            f"{_f(x['p50_ms'], 2)} / {_f(x['p99_ms'], 2)} / {_f(x['max_ms'], 2)}",
            f"{x['success']:.4f}",
        )

    for label, by in runs.items():
        t, o = by.get("theirs"), by.get("ours")
        rate = " / ".join(_rate(x) for x in (t, o) if x is not None)
        (tl, ts), (ol_, os_) = cell(t), cell(o)
        same_rate = t is not None and o is not None and t["target_rate"] == o["target_rate"]
        ratio = _x(_div(o["p99_ms"], t["p99_ms"])) if t and o and same_rate else "– (rates differ)"
        lines.append(f"| {label}: {rate} requests/s | {tl} | {ts} | {ol_} | {os_} | {ratio} |")
    return lines


def _hitcpu_table(hc: dict[str, Any]) -> list[str]:
    t, o = hc["theirs"], hc["ours"]
    return [
        f"{hc['requests']:,} sequential requests on one keep-alive connection to `{hc['path']}` "
        "(cache hits for ours, a Prometheus query each for prometheus-adapter).",
        "",
        "| measure | prometheus-adapter | llm-metrics-adapter | ours ÷ theirs |",
        "|---|---:|---:|---:|",
        _row(
            "server CPU ms per request",
            t["cpu_ms_per_request"],
            o["cpu_ms_per_request"],
            higher_better=False,
            digits=3,
        ),
        _row("p50 latency, ms", t["p50_ms"], o["p50_ms"], higher_better=False, digits=2),
        _row("p99 latency, ms", t["p99_ms"], o["p99_ms"], higher_better=False, digits=2),
        f"| errors | {t['errors']} | {o['errors']} | |",
    ]


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


def _profile_before(out_dir: Path) -> list[str]:
    """The cache-hit profile recorded before rendered responses (``profile-before.json``,
    kept from that run), to compare with this run's."""
    path = out_dir / "profile-before.json"
    if not path.exists():
        return []
    before = json.loads(path.read_text(encoding="utf-8"))
    hit = before["profile"].get("hit")
    if not hit:
        return []
    return [
        "#### Cache hits, before (recorded " + str(before["recorded"]) + ")",
        "",
        str(before["note"]).capitalize() + ".",
        "",
        *_profile(hit, "ours under the saturated HPA pattern, 16 connections"),
        "",
    ]


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
        *(
            [
                "## Headline: the HPA controller's rhythm at scale",
                "",
                *_rhythm_table(sc["rhythm"]),
                "",
            ]
            if "rhythm" in sc
            else []
        ),
        "## Targets",
        "",
        "Ratios are ours ÷ prometheus-adapter's, same run, same machine.",
        "",
        *_targets(r),
        "",
        *(
            ["## Open loop: latency against request rate", "", *_openloop_table(sc["openloop"]), ""]
            if "openloop" in sc
            else []
        ),
        *(
            ["## One hot path: server CPU per request", "", *_hitcpu_table(sc["hitcpu"]), ""]
            if "hitcpu" in sc
            else []
        ),
        "## Machine and versions",
        "",
        f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, Linux {m['kernel']}, "
        f"Python {m['python']}",
        f"- load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}; at end "
        f"{', '.join(f'{x:.2f}' for x in m.get('loadavg_end', ()))}",
        *(f"- {k}: {val}" for k, val in v.items()),
        "",
        "## Results",
        "",
        "Both adapters ran at the same time against the same Prometheus; each load ran against one "
        f"adapter at a time (prometheus-adapter first). {cfg['hpas']} HPAs × "
        f"{cfg['metrics_per_hpa']} metrics (a Pods metric with a labelSelector and an External "
        f"metric), {r.get('hpa_series', 0):,} HPA series plus bulk series to "
        f"{r.get('hpa_series', 0) + (r.get('shard_sizes') or [0])[0]:,} in Prometheus during the main "
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
        doc += _profile_before(out_dir)
    doc += [SCRAPE.read_text(encoding="utf-8").rstrip(), ""]
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
