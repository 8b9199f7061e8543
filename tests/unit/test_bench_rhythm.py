"""The benchmark's pure code: the rhythm's schedule and value ages, vegeta's targets and report,
the open-loop rates, the targets' verdicts, and the option checks of ``python -m bench.run``."""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import openloop, report, rhythm, run


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# --------------------------------------------------------------------------- schedule


def test_schedule_spreads_every_hpa_once_over_the_period() -> None:
    ticks = rhythm.build_schedule(1000, 15.0)
    assert sorted(t.hpa for t in ticks) == list(range(1000))
    offsets = [t.offset for t in ticks]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0.0
    assert max(offsets) < 15.0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {0.015}  # 1,000 HPAs in 15 s: one due every 15 ms, ~133 requests/s with 2 each


def test_schedule_of_one_hpa_and_bad_sizes() -> None:
    assert rhythm.build_schedule(1, 15.0) == [rhythm.Tick(offset=0.0, hpa=0)]
    with pytest.raises(ValueError, match="hpas"):
        rhythm.build_schedule(0, 15.0)
    with pytest.raises(ValueError, match="period"):
        rhythm.build_schedule(10, 0.0)


def test_rhythm_requests_are_each_hpas_pods_then_external_path() -> None:
    reqs = run.rhythm_requests(3)
    assert len(reqs) == 3
    assert reqs[2][0].startswith("/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench-2/pods/")
    assert "labelSelector=app%3Djetstream" in reqs[2][0]
    assert (
        reqs[2][1]
        == "/apis/external.metrics.k8s.io/v1beta1/namespaces/bench-2/num_requests_waiting"
    )


# --------------------------------------------------------------------------- ages


def test_value_ages_from_each_items_timestamp() -> None:
    body = json.dumps(
        {
            "kind": "MetricValueList",
            "items": [
                {"timestamp": "2026-12-05T13:49:30Z", "value": "1"},
                {"timestamp": "2026-12-05T13:49:36.5Z", "value": "2"},
                {"timestamp": "2026-12-05T14:49:20+01:00", "value": "3"},
            ],
        }
    )
    received = _epoch("2026-12-05T13:49:40")
    assert rhythm.value_ages(body, received) == pytest.approx([10.0, 3.5, 20.0])


def test_value_ages_of_an_empty_list_is_empty() -> None:
    assert rhythm.value_ages(b'{"items": []}', 0.0) == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b'{"kind": "Status"}', "no items"),
        (b'{"items": [{"value": "1"}]}', "without a timestamp"),
        (b'{"items": [{"timestamp": "2026-12-05T13:49:30"}]}', "time zone"),
        (b'{"items": [{"timestamp": "yesterday"}]}', "yesterday"),
    ],
)
def test_value_ages_refuses_what_it_cannot_date(body: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rhythm.value_ages(body, 0.0)


def test_summarize_percentiles_lag_and_bounds() -> None:
    res = rhythm.RhythmResult(
        seconds=60.0,
        latencies_ms=[float(i) for i in range(1, 101)],
        lags_s=[0.001, 0.002, 0.5],
        ages_s=[1.0, 2.0, 3.0, 30.0],
        errors=1,
        dispatched=50,
        client_cpu_s=6.0,
    )
    out = rhythm.summarize(res, period=15.0, distinct_queries=2000)
    assert out["requests"] == 100
    assert out["rps"] == pytest.approx(100 / 60, abs=0.05)
    assert (out["p50_ms"], out["p99_ms"], out["max_ms"]) == (50.0, 99.0, 100.0)
    assert out["lag_max_s"] == 0.5
    assert (out["age_p50_s"], out["age_max_s"]) == (2.0, 30.0)
    assert out["client_cpu_pct"] == 10.0
    assert out["query_bound_per_min"] == 8000.0  # 2,000 distinct queries, once per 15 s


def test_summarize_of_nothing_measured_has_no_numbers() -> None:
    out = rhythm.summarize(rhythm.RhythmResult(seconds=0.0), period=15.0, distinct_queries=2)
    assert out["requests"] == 0
    assert out["p50_ms"] is None and out["age_p99_s"] is None and out["lag_max_s"] is None


# --------------------------------------------------------------------------- vegeta


def test_targets_carry_the_authorization_header_per_path() -> None:
    text = openloop.targets("https://127.0.0.1:8443", ["/a?x=1", "/b"], "tok")
    blocks = text.split("\n\n")
    assert blocks[0].splitlines() == [
        "GET https://127.0.0.1:8443/a?x=1",
        "Authorization: Bearer tok",
        "Accept: application/json",
    ]
    assert blocks[1].startswith("GET https://127.0.0.1:8443/b\n")
    assert text.count("GET ") == 2


@pytest.mark.parametrize("paths", [[], ["no-slash"], ["/a b"], ["/a\nGET http://x/"]])
def test_targets_refuse_what_is_not_a_path(paths: list[str]) -> None:
    with pytest.raises(ValueError, match=r"paths|not a request path"):
        openloop.targets("https://127.0.0.1:1", paths, "tok")


VEGETA_JSON = {
    "latencies": {
        "total": 37505303,
        "mean": 1875265,
        "50th": 1685031,
        "90th": 2867403,
        "95th": 3161201,
        "99th": 3443102,
        "max": 9443102,
        "min": 1260607,
    },
    "bytes_in": {"total": 25060, "mean": 1253},
    "requests": 20,
    "rate": 21.051853524600944,
    "throughput": 19.021870298268198,
    "success": 0.95,
    "status_codes": {"200": 19, "0": 1},
    "errors": ["Get https://127.0.0.1:1/a: timeout"],
}


def test_parse_vegeta_report() -> None:
    out = openloop.parse_report(json.dumps(VEGETA_JSON))
    assert out["requests"] == 20
    assert (out["p50_ms"], out["p90_ms"], out["p99_ms"], out["max_ms"]) == (
        1.685,
        2.867,
        3.443,
        9.443,
    )
    assert out["success"] == 0.95
    assert out["rate"] == 21.1
    assert out["status_codes"] == {"200": 19, "0": 1}
    assert out["errors"] == ["Get https://127.0.0.1:1/a: timeout"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        json.dumps({**VEGETA_JSON, "latencies": {}}),
        json.dumps({**VEGETA_JSON, "requests": 0}),
        json.dumps({**VEGETA_JSON, "success": "x"}),
    ],
)
def test_parse_vegeta_report_refuses_a_broken_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"vegeta (JSON )?report"):
        openloop.parse_report(text)


def test_open_loop_rates() -> None:
    assert openloop.rates(400.0, 1000.0) == [
        ("25 % of peer max", 100.0),
        ("50 % of peer max", 200.0),
        ("80 % of peer max", 320.0),
        ("own max", 1000.0),
    ]
    with pytest.raises(ValueError, match="positive"):
        openloop.rates(0.0, 10.0)


# --------------------------------------------------------------------------- verdicts


def test_verdicts() -> None:
    assert report.verdict(0.4, 0.5, at_most=True) == "met"
    assert report.verdict(0.5, 0.5, at_most=True) == "met"
    assert report.verdict(0.8, 0.5, at_most=True) == "**missed by 0.30×**"
    assert report.verdict(2.5, 3, at_most=False) == "**missed by 0.50×**"
    assert report.verdict(0.31, 0.25, at_most=True, unit=" ms") == "**missed by 0.06 ms**"
    assert report.verdict(None, 1, at_most=True) == report.NOT_MEASURED
    assert report.verdict(math.nan, 1, at_most=True) == report.NOT_MEASURED


def _side(**kw: Any) -> dict[str, Any]:
    return {"rps": 100.0, "p50_ms": 2.0, "p99_ms": 8.0, "cpu_ms_per_request": 1.0, **kw}


def _results() -> dict[str, Any]:
    rh_side = {
        "p50_ms": 4.0,
        "p99_ms": 10.0,
        "cpu_s_per_min": 6.0,
        "queries_per_min": 8000.0,
        "query_bound_per_min": 8000.0,
        "age_p99_s": 15.0,
    }
    return {
        "scenarios": {
            "rhythm": {
                "hpas": 1000,
                "theirs": rh_side,
                "ours": {
                    **rh_side,
                    "p50_ms": 1.0,
                    "p99_ms": 6.0,
                    "cpu_s_per_min": 2.0,
                    "queries_per_min": 9000.0,
                    "age_p99_s": 16.5,
                    "hit_ratio": 0.96,
                },
            },
            "hpa": {"theirs": _side(rps=300.0), "ours": _side(rps=1200.0)},
            "openloop": {
                "runs": [
                    {
                        "side": "theirs",
                        "label": "80 % of peer max",
                        "p99_ms": 20.0,
                        "target_rate": 240.0,
                    },
                    {
                        "side": "ours",
                        "label": "80 % of peer max",
                        "p99_ms": 5.0,
                        "target_rate": 240.0,
                    },
                ]
            },
            "hitcpu": {
                "requests": 10_000,
                "theirs": _side(cpu_ms_per_request=1.2),
                "ours": _side(cpu_ms_per_request=0.3),
            },
        }
    }


def test_targets_rows_follow_the_targets_in_order_with_verdicts() -> None:
    rows = report.targets_rows(_results())
    assert len(rows) == 11
    verdicts = [row[4] for row in rows]
    # p50 0.25×, p99 0.60×: the worse one decides.
    assert verdicts[0] == "**missed by 0.10×**"
    assert rows[0][3] == "p50 0.25×, p99 0.60×"
    assert verdicts[1] == "met"  # CPU 2 ÷ 6
    assert verdicts[2] == "met"  # 0.96 cache answers
    assert verdicts[3] == "**missed by 1000.00 /min**"  # 9,000 queries for a bound of 8,000
    assert verdicts[4] == "**missed by 0.50 s**"  # age p99 16.5 vs 15 + 1
    assert verdicts[5] == "met"  # open loop p99 5 ÷ 20
    assert verdicts[6] == "met"  # 1,200 ÷ 300 requests/s
    assert verdicts[7] == "**missed by 0.05 ms**"  # 0.3 ms per hit
    assert verdicts[8:] == [report.NOT_MEASURED] * 3  # no miss, no GMP growth, e2e elsewhere
    assert rows[0][0].startswith("HPA rhythm, 1,000 HPAs")


def test_targets_rows_without_any_scenario_say_not_measured() -> None:
    rows = report.targets_rows({"scenarios": {}})
    assert len(rows) == 11
    assert all(row[4] == report.NOT_MEASURED for row in rows)


# --------------------------------------------------------------------------- options


def test_bench_options_defaults_and_checks() -> None:
    args = run.parse_args([])
    assert args.scenarios[0] == "rhythm"
    assert (args.rhythm_hpas, args.rhythm_warmup, args.rhythm_seconds) == (1000, 60.0, 300.0)
    assert (args.openloop_seconds, args.hitcpu_requests) == (20.0, 10_000)
    assert run.namespaces_needed(args) == 1000
    assert run.namespaces_needed(run.parse_args(["--scenarios", "hpa"])) == 50
    for bad in (["--rhythm-hpas", "0"], ["--rhythm-seconds", "0"], ["--scenarios", "nope"]):
        with pytest.raises(SystemExit):
            run.parse_args(bad)


def test_shard_sizes_reach_each_growth_level() -> None:
    assert run.shard_sizes(1400, 1_000_000) == [8600, 90_000] + [100_000] * 9
    # The rhythm's 1,000 namespaces already hold 28,000 series: the 10k step is what they are.
    sizes = run.shard_sizes(28_000, 100_000)
    assert sizes == [1, 71_999]
    assert 28_000 + sum(sizes) == 100_000


# --------------------------------------------------------------------------- freshness floor


def _targets_doc(last: str) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "activeTargets": [
                {
                    "scrapeUrl": "http://127.0.0.1:4000/metrics",
                    "lastScrape": "2026-12-05T13:00:00Z",
                },
                {"scrapeUrl": "http://127.0.0.1:4001/metrics", "lastScrape": last},
            ]
        },
    }


def test_last_scrape_of_one_target_with_nanoseconds() -> None:
    doc = _targets_doc("2026-12-05T13:49:36.123456789Z")
    assert rhythm.last_scrape(doc, "127.0.0.1:4001") == pytest.approx(
        _epoch("2026-12-05T13:49:36.123456"), abs=1e-6
    )
    assert rhythm.last_scrape(doc, "127.0.0.1:4000") == _epoch("2026-12-05T13:00:00")
    # Before the first scrape Prometheus reports Go's zero time.
    assert rhythm.last_scrape(_targets_doc("0001-01-01T00:00:00Z"), "127.0.0.1:4001") is None
    with pytest.raises(ValueError, match="no active target"):
        rhythm.last_scrape(doc, "127.0.0.1:400")
    with pytest.raises(ValueError, match="not a Prometheus targets answer"):
        rhythm.last_scrape({"data": {}}, "127.0.0.1:4001")


def test_floor_ages_use_the_latest_scrape_at_or_before_each_receive() -> None:
    scrapes = [115.0, 100.0, 130.0, 100.0]
    assert rhythm.floor_ages([99.0, 100.0, 114.5, 116.0, 140.0], scrapes) == [0.0, 14.5, 1.0, 10.0]
    assert rhythm.floor_ages([1.0], []) == []


def test_age_target_compares_ours_with_the_newest_sample_theirs_served() -> None:
    r = _results()
    r["scenarios"]["rhythm"]["theirs"]["floor_age_p99_s"] = 15.6
    rows = report.targets_rows(r)
    assert rows[4][2] == "p99 16.50 vs 15.60 s (theirs: newest sample at receive time)"
    assert rows[4][4] == "met"


# --------------------------------------------------------------------------- README


def test_readme_states_the_option_defaults_the_harness_has() -> None:
    text = (Path(run.ROOT) / "bench" / "README.md").read_text(encoding="utf-8")
    stated = dict(re.findall(r"`--([a-z-]+)` \((\d+)\)", text))
    assert {
        "rhythm-hpas",
        "rhythm-warmup",
        "rhythm-seconds",
        "openloop-seconds",
        "hitcpu-requests",
    } <= set(stated)
    defaults = vars(run.parse_args([]))
    for option, value in stated.items():
        assert float(defaults[option.replace("-", "_")]) == float(value), option


def test_readme_bench_commands_parse() -> None:
    text = (Path(run.ROOT) / "bench" / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r'^make bench BENCH_ARGS="([^"]*)"', text, re.M)
    assert len(commands) >= 3
    for args in commands:
        run.parse_args(shlex.split(args))


def test_ratio_column_calls_equal_equal() -> None:
    assert report._ratio(7.78, 7.79, higher_better=False) == "1.00×"
    assert report._ratio(10.0, 5.0, higher_better=False) == "0.50× (better)"
    assert report._ratio(10.0, 5.0, higher_better=True) == "0.50× (worse)"
    assert report._ratio(None, 5.0, higher_better=True) == "–"
