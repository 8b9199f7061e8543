"""The exporter simulators serve JetStream's and the TPU plugin's names, labels and exact values."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sim.fleet import SimFleet, load_curve
from sim.jetstream import (
    JetStreamValues,
    SimServer,
    SimTpuExporter,
    TpuChipValues,
    values_for_load,
)
from sim.prometheus import DEFAULT_BINARY, LocalPrometheus, find_binary

Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Scraped:
    text = httpx.get(url, timeout=5, trust_env=False).text
    out: Scraped = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def find(scraped: Scraped, name: str, **labels: str) -> list[float]:
    return [
        v
        for (n, ls), v in scraped.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    ]


@pytest.fixture
def server() -> Iterator[SimServer]:
    with SimServer(pod="pod-0", namespace="team-a", cluster="c1", engines=3) as sim:
        yield sim


def test_server_binds_loopback(server: SimServer) -> None:
    assert server.target.startswith("127.0.0.1:")
    assert server.port > 0


def test_every_series_has_id_and_target_labels(server: SimServer) -> None:
    scraped = scrape(server.url)
    jetstream = [(n, dict(ls)) for (n, ls) in scraped if not n.startswith("python_")]
    assert jetstream
    for name, labels in jetstream:
        assert labels["id"] == "pod-0", name
        assert labels["pod"] == "pod-0"
        assert labels["namespace"] == "team-a"
        assert labels["cluster"] == "c1"
        assert labels["instance"] == f"pod-0:{server.port}"
        assert labels["job"] == "jetstream"


def test_metric_names_are_jetstreams(server: SimServer) -> None:
    names = {n for (n, _) in scrape(server.url)}
    for name in (
        "jetstream_prefill_backlog_size",
        "jetstream_slots_used_percentage",
        "jetstream_transfer_backlog_size",
        "jetstream_generate_backlog_size",
        "num_requests_waiting",
        "kv_cache_utilization_perc",
        "jetstream_request_success_count_total",
        "jetstream_time_to_first_token_bucket",
        "jetstream_time_to_first_token_count",
    ):
        assert name in names, name


def test_setters_export_exact_values(server: SimServer) -> None:
    server.set_backlog(17)
    server.set_slots([0.25, 0.5, 1.0])
    server.set_generate_backlog([1, 2, 3])
    server.set_transfer_backlog([4, 5, 6])
    server.set_requests_waiting(9)
    server.set_kv_cache(0.75)
    server.add_successes(4)
    server.observe_ttft(0.07)
    scraped = scrape(server.url)
    assert find(scraped, "jetstream_prefill_backlog_size") == [17.0]
    for idx, want in enumerate([0.25, 0.5, 1.0]):
        assert find(scraped, "jetstream_slots_used_percentage", idx=str(idx)) == [want]
    for idx, want in enumerate([1, 2, 3]):
        assert find(scraped, "jetstream_generate_backlog_size", idx=str(idx)) == [want]
    for idx, want in enumerate([4, 5, 6]):
        assert find(scraped, "jetstream_transfer_backlog_size", idx=str(idx)) == [want]
    assert find(scraped, "num_requests_waiting") == [9.0]
    assert find(scraped, "kv_cache_utilization_perc") == [75.0]  # JetStream exports a percentage
    assert find(scraped, "jetstream_request_success_count_total") == [4.0]
    assert find(scraped, "jetstream_time_to_first_token_count") == [1.0]
    assert find(scraped, "jetstream_time_to_first_token_bucket", le="0.1") == [1.0]
    assert find(scraped, "jetstream_time_to_first_token_bucket", le="0.06") == [0.0]
    assert server.values.slots == (0.25, 0.5, 1.0)
    assert server.successes == 4.0


def test_setters_reject_bad_shapes(server: SimServer) -> None:
    with pytest.raises(ValueError, match="one value per engine"):
        server.set_slots([0.5])
    with pytest.raises(ValueError, match=r"0\.\.1"):
        server.set_slots([0.5, 1.5, 0.0])
    with pytest.raises(ValueError, match="only goes up"):
        server.add_successes(-1)


def test_values_set_before_start_are_published_on_start() -> None:
    sim = SimServer(pod="early", namespace="ns", cluster="c", engines=1)
    sim.set_backlog(5)
    sim.add_successes(2)
    with sim:
        scraped = scrape(sim.url)
        assert find(scraped, "jetstream_prefill_backlog_size", instance=f"early:{sim.port}") == [
            5.0
        ]
        assert find(scraped, "jetstream_request_success_count_total") == [2.0]
        assert not find(scraped, "jetstream_prefill_backlog_size", instance="early:0")


@pytest.mark.parametrize("level", [0.0, 0.3, 0.8, 1.0, 1.7])
def test_load_derives_consistent_gauges(level: float) -> None:
    v = values_for_load(level, engines=4)
    assert v.prefill_backlog == round(20 * level)
    assert all(0.0 <= s <= 1.0 for s in v.slots)
    assert v.requests_waiting == v.prefill_backlog + sum(v.generate_backlog)
    assert v.kv_cache == pytest.approx(sum(v.slots) / 4, abs=1e-4)
    assert len(v.transfer_backlog) == len(v.generate_backlog) == 4


def test_load_is_monotonic_and_validated() -> None:
    low, high = values_for_load(0.2, engines=2), values_for_load(0.9, engines=2)
    assert high.prefill_backlog > low.prefill_backlog
    assert all(h >= lo for h, lo in zip(high.slots, low.slots, strict=True))
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="load level"):
            values_for_load(bad, engines=2)


def test_server_load_exports_derived_values(server: SimServer) -> None:
    values = server.load(0.6)
    assert values == values_for_load(0.6, engines=3)
    scraped = scrape(server.url)
    assert find(scraped, "jetstream_prefill_backlog_size") == [float(values.prefill_backlog)]
    assert find(scraped, "kv_cache_utilization_perc") == [round(100 * values.kv_cache, 6)]


def test_set_values_round_trips(server: SimServer) -> None:
    wanted = JetStreamValues(
        prefill_backlog=2,
        slots=(0.1, 0.2, 0.3),
        transfer_backlog=(0, 0, 1),
        generate_backlog=(1, 0, 0),
        requests_waiting=3,
        kv_cache=0.2,
    )
    server.set_values(wanted)
    assert server.values == wanted


def test_tpu_exporter_labels_and_values() -> None:
    chip = TpuChipValues(
        namespace="team-a",
        pod="pod-0",
        accelerator_id="1",
        memory_used=4e9,
        memory_total=16e9,
        duty_cycle=55.0,
        tensorcore_utilization=40.0,
    )
    with SimTpuExporter(cluster="c1") as tpu:
        tpu.set_chip(chip)
        scraped = scrape(tpu.url)
        got = {
            name: find(scraped, name, exported_pod="pod-0", accelerator_id="1")
            for name in ("memory_used", "memory_total", "duty_cycle", "tensorcore_utilization")
        }
        assert got == {
            "memory_used": [4e9],
            "memory_total": [16e9],
            "duty_cycle": [55.0],
            "tensorcore_utilization": [40.0],
        }
        labels = dict(next(ls for (n, ls) in scraped if n == "memory_used"))
        assert labels["namespace"] == "kube-system"
        assert labels["exported_namespace"] == "team-a"
        assert labels["make"] == "cloud-tpu"
        assert labels["cluster"] == "c1"
        assert labels["container"] == "jetstream-http"
        assert {"model", "tpu_topology", "instance", "job", "pod"} <= set(labels)

        tpu.set_chip(
            replace(
                chip, memory_used=5e9, duty_cycle=1.0, tensorcore_utilization=1.0, container="other"
            )
        )
        scraped = scrape(tpu.url)
        assert find(scraped, "memory_used", exported_pod="pod-0") == [5e9]  # old series replaced
        tpu.remove_chip(namespace="team-a", pod="pod-0", accelerator_id="1")
        assert find(scrape(tpu.url), "memory_used") == []


def test_stopped_server_refuses_scrapes() -> None:
    sim = SimServer(pod="p", namespace="n", cluster="c").start()
    url = sim.url
    sim.stop()
    sim.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2, trust_env=False)


def test_load_curve_is_bounded_and_bursts() -> None:
    samples = [load_curve(t / 2) for t in range(480)]
    assert min(samples) >= 0.0
    assert max(samples) <= 0.8 + 0.6 + 1e-9
    assert load_curve(45.0) - load_curve(35.0) > 0.4  # the burst
    assert load_curve(10.0, phase=0.25) != load_curve(10.0)


def test_fleet_step_sets_each_pod_from_the_curve() -> None:
    with SimFleet(cluster="demo", pods={"default": 2, "other": 1}, engines=2) as fleet:
        assert len(fleet.targets) == 4
        levels = fleet.step(12.0)
        for pod in fleet.pods:
            assert levels[pod.name] == load_curve(12.0, phase=pod.phase)
            assert pod.values == values_for_load(levels[pod.name], engines=2)
        assert {(c.namespace, c.pod) for c in fleet.tpu.chips} == {
            (p.namespace, p.name) for p in fleet.pods
        }


def test_missing_prometheus_binary_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_BIN", "/nonexistent/prometheus")
    with pytest.raises(RuntimeError) as info:
        LocalPrometheus(["127.0.0.1:1"]).start()
    assert str(info.value) == (
        "prometheus binary not found at /nonexistent/prometheus: run `make prometheus` "
        "(installs Debian's prometheus)"
    )


def test_default_binary_is_debians(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_BIN", raising=False)
    assert DEFAULT_BINARY == "/usr/bin/prometheus"
    if os.access(DEFAULT_BINARY, os.X_OK):
        assert find_binary() == DEFAULT_BINARY
    else:
        with pytest.raises(RuntimeError) as info:
            find_binary()
        assert str(info.value) == (
            "prometheus binary not found at /usr/bin/prometheus: run `make prometheus` "
            "(installs Debian's prometheus)"
        )
