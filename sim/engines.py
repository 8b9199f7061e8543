"""Simulated LLM servers besides JetStream, and a mixed fleet of them for tests and the demo.

Each simulator is one pod's metrics endpoint: its own registry behind its own loopback HTTP
server (like :class:`sim.jetstream.SimServer`), exporting the server's own metric names, types,
label sets and histogram bucket boundaries, as read in the servers' source (the releases are
listed in docs/presets.md):

============================  ==========================================================
:class:`VllmServer`           ``vllm:*`` with ``model_name`` and ``engine`` (one series per
                              data-parallel engine); ``generation`` picks the metric names of
                              a release (the KV-cache gauge and the per-token histogram were
                              renamed; a transition release exports both names)
:class:`SglangServer`         ``sglang:*``: scheduler gauges with ``model_name``,
                              ``engine_type``, ``tp_rank``, ``pp_rank`` (and ``dp_rank`` with
                              data-parallel attention): every rank of one data-parallel group
                              reports the same queue; tokenizer histograms with ``model_name``
                              and ``engine_type``
:class:`TgiServer`            ``tgi_*``, no labels of its own, 35 geometric duration buckets
:class:`TritonTrtLlmServer`   Triton's TensorRT-LLM backend: ``nv_trt_llm_request_metrics``
                              and ``nv_trt_llm_kv_cache_block_metrics`` with ``model``,
                              ``version`` and the type label; ``legacy`` omits the
                              ``waiting`` and ``fraction`` types older backends lack
:class:`TrtllmServeServer`    ``trtllm-serve``'s ``trtllm_*`` with ``model_name`` and
                              ``engine_type``
:class:`NimServer`            NVIDIA NIM for LLMs: unprefixed ``num_requests_*``,
                              ``gpu_cache_usage_perc`` and latency histograms, ``model_name``
:class:`JetStreamServer`      :class:`sim.jetstream.SimServer` with the common interface
============================  ==========================================================

Every series also carries the target labels GMP's scrape adds (``cluster``, ``namespace``,
``pod``, ``instance``, ``job``); :class:`sim.prometheus.LocalPrometheus` keeps them
(``honor_labels``). Gauges start at zero; :meth:`LlmServer.set_values` sets them exactly,
:meth:`LlmServer.load` derives them from a load level (:func:`engine_values_for_load`).
Latency histograms record observations with :meth:`LlmServer.observe_ttft` and
:meth:`LlmServer.observe_tpot`; a server without such a histogram ignores them.

:class:`SimDcgmExporter` is NVIDIA's dcgm-exporter with its Kubernetes mapping, for the GPU
presets. :class:`EngineFleet` runs several servers (any mix of engines, namespaces and clusters) and
moves their load with :func:`sim.fleet.load_curve`.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any, ClassVar, Literal, Self
from wsgiref import simple_server
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import make_wsgi_app
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

from sim.fleet import load_curve
from sim.jetstream import SimServer, _Exporter
from sim.service import Service

__all__ = [
    "DEMO_PLANS",
    "DEMO_TARGETS",
    "DEMO_VALUE_TARGETS",
    "ENGINES",
    "EngineFleet",
    "EngineValues",
    "Exposition",
    "GpuValues",
    "JetStreamServer",
    "LlmServer",
    "NimServer",
    "PodPlan",
    "SglangServer",
    "SimDcgmExporter",
    "TgiServer",
    "TritonTrtLlmServer",
    "TrtllmServeServer",
    "VllmServer",
    "engine_values_for_load",
    "make_server",
]

_TARGET_LABELS = ("cluster", "namespace", "pod", "instance", "job")

# Bucket boundaries, as each server declares them.
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                     5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
VLLM_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                     7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
                      0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000,
                      8.000)  # fmt: skip


def _tgi_duration_buckets() -> tuple[float, ...]:
    # router/src/server.rs: 35 buckets, a geometric sequence computed by repeated multiplication.
    out: list[float] = []
    value = 0.0001
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return tuple(out)


TGI_DURATION_BUCKETS = _tgi_duration_buckets()
# NIM's buckets are not documented; its metrics come from its vLLM-based backend, whose v0
# histograms had these boundaries.
NIM_TTFT_BUCKETS = VLLM_TTFT_BUCKETS[:16]
NIM_TPOT_BUCKETS = VLLM_TPOT_BUCKETS[:13]

Exposition = Literal["negotiated", "text", "underscores"]
"""How a server answers a scrape. ``negotiated``: as the installed ``prometheus_client`` does, by
the scraper's ``Accept`` header; Prometheus asks for OpenMetrics, and releases of
``prometheus_client`` with UTF-8 name escaping (``client_python`` issue #1177) then write
``vllm:x`` samples as ``vllm_x``, so that is the name Prometheus stores. ``text``: always the
Prometheus text format, names as declared (``vllm:x``), as clients before that escaping did.
``underscores``: always ``vllm_x``, what such a client sends to Prometheus."""

VllmGeneration = Literal["current", "transition", "legacy"]
"""Which names a vLLM release exports: ``current`` ``vllm:kv_cache_usage_perc`` and
``vllm:inter_token_latency_seconds``; ``legacy`` ``vllm:gpu_cache_usage_perc`` and
``vllm:time_per_output_token_seconds``; ``transition`` both of each, with the same data."""


@dataclass(frozen=True, slots=True)
class EngineValues:
    """The gauges of one simulated server, one entry per split (a vLLM engine, an SGLang
    data-parallel rank; one entry for servers that do not split).

    ``waiting`` / ``running``: requests; ``kv_cache``: 0–1 fractions.
    """

    waiting: tuple[int, ...]
    running: tuple[int, ...]
    kv_cache: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.waiting) == len(self.running) == len(self.kv_cache) >= 1:
            raise ValueError("waiting, running and kv_cache need one entry per split")
        if any(not 0.0 <= f <= 1.0 for f in self.kv_cache):
            raise ValueError("kv_cache fractions must be within 0..1")


def engine_values_for_load(level: float, *, splits: int = 1, max_running: int = 64) -> EngineValues:
    """The gauges a server shows at ``level`` (0 = idle, 1 = saturated, >1 = overloaded).

    Deterministic: ``round(20*level)`` requests wait in total, spread over the splits (the first
    ones get the remainder); each split runs ``round(max_running*min(1, level))`` requests; split
    ``i`` fills its KV cache to ``min(1, level*(1 - 0.1*(i % 5)))``, rounded to 4 digits.
    """
    if not math.isfinite(level) or level < 0:
        raise ValueError(f"load level must be a finite number >= 0, got {level!r}")
    if splits < 1:
        raise ValueError("splits must be >= 1")
    total = round(20 * level)
    waiting = tuple(total // splits + (1 if i < total % splits else 0) for i in range(splits))
    running = tuple(round(max_running * min(1.0, level)) for _ in range(splits))
    kv = tuple(round(min(1.0, level * (1.0 - 0.1 * (i % 5))), 4) for i in range(splits))
    return EngineValues(waiting=waiting, running=running, kv_cache=kv)


Gauges = Iterator[tuple[str, str, tuple[str, ...], list[tuple[tuple[str, ...], float]]]]
"""(name, help, engine label names, [(engine label values, value)]) per gauge family."""


class _Histogram:
    """One histogram series: observation counts per bucket, and their sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, count: int) -> None:
        if count < 0 or not math.isfinite(value):
            raise ValueError("observe a finite value a non-negative number of times")
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.total += value * count

    def buckets(self, le: Callable[[float], str]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((le(bound), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class LlmServer(_Exporter):
    """One simulated LLM server pod (see the module docstring for the engines).

    ``model`` is the served model name (the value of the engine's model label); ``splits`` the
    number of engine splits whose gauges :class:`EngineValues` holds; ``exposition`` how
    metric names with a colon reach Prometheus (:data:`Exposition`).
    """

    engine: ClassVar[str]
    default_job: ClassVar[str]
    ttft_buckets: ClassVar[tuple[float, ...] | None] = None
    tpot_buckets: ClassVar[tuple[float, ...] | None] = None

    def __init__(
        self,
        *,
        pod: str,
        namespace: str,
        cluster: str,
        model: str = "llama-3-8b",
        splits: int = 1,
        port: int = 0,
        job: str | None = None,
        exposition: Exposition = "negotiated",
    ) -> None:
        if splits < 1:
            raise ValueError("splits must be >= 1")
        super().__init__(port=port)
        self.exposition = exposition
        self.pod = pod
        self.namespace = namespace
        self.cluster = cluster
        self.model = model
        self.splits = splits
        self.job = job or self.default_job
        self._lock = threading.Lock()
        self._values = engine_values_for_load(0.0, splits=splits)
        self._histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = {}
        self.registry.register(self)

    def start(self) -> Self:
        """Bind 127.0.0.1 and serve the registry (any path) from a daemon thread."""
        if self._server is None:
            metrics = make_wsgi_app(self.registry)
            text_only = self.exposition == "text"

            def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
                if text_only:
                    environ.pop("HTTP_ACCEPT", None)  # the text format, whatever was asked
                body: Iterable[bytes] = metrics(environ, start_response)
                return body

            server = simple_server.make_server(
                "127.0.0.1", self._port, app, _ThreadingServer, handler_class=_QuietHandler
            )
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._server, self._thread = server, thread
            self._port = server.server_port
            self._on_started()
        return self

    # ----------------------------------------------------------------- values

    @property
    def values(self) -> EngineValues:
        with self._lock:
            return self._values

    def set_values(self, values: EngineValues) -> None:
        """Export exactly ``values`` (one entry per split)."""
        if len(values.waiting) != self.splits:
            raise ValueError(f"need one value per split ({self.splits}), got {len(values.waiting)}")
        with self._lock:
            self._values = values

    def load(self, level: float) -> EngineValues:
        """Set every gauge from a load level (:func:`engine_values_for_load`); returns them."""
        values = engine_values_for_load(level, splits=self.splits)
        self.set_values(values)
        return values

    def observe_ttft(self, seconds: float, count: int = 1) -> None:
        """Record ``count`` time-to-first-token observations (ignored without such a histogram)."""
        for name, labels in self._ttft_series():
            self._observe(name, labels, self.ttft_buckets, seconds, count)

    def observe_tpot(self, seconds: float, count: int = 1) -> None:
        """Record ``count`` per-output-token latency observations (ignored without one)."""
        for name, labels in self._tpot_series():
            self._observe(name, labels, self.tpot_buckets, seconds, count)

    def _observe(
        self,
        name: str,
        labels: tuple[str, ...],
        bounds: Sequence[float] | None,
        seconds: float,
        count: int,
    ) -> None:
        assert bounds is not None
        with self._lock:
            hist = self._histograms.get((name, labels))
            if hist is None:
                hist = self._histograms[(name, labels)] = _Histogram(bounds)
            hist.observe(seconds, count)

    # ----------------------------------------------------------------- exposition

    def _target(self) -> tuple[str, ...]:
        port = self._port if self._server is not None else 0
        return (self.cluster, self.namespace, self.pod, f"{self.pod}:{port}", self.job)

    def _ttft_series(self) -> list[tuple[str, tuple[str, ...]]]:
        """(histogram name, engine label values) for each TTFT series the server records."""
        return []

    def _tpot_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return []

    def _histogram_labels(self) -> tuple[str, ...]:
        """Names of the engine labels on this server's histograms."""
        return ()

    def _gauges(self, values: EngineValues) -> Gauges:
        """Every gauge family of the server, for ``values``."""
        raise NotImplementedError

    def _le(self, bound: float) -> str:
        # prometheus_client (and the Rust exporter TGI uses) print the shortest round-trip form.
        return repr(float(bound))

    def describe(self) -> list[Metric]:
        return []  # families are known at collect time only

    def _exposed(self, name: str) -> str:
        return name.replace(":", "_") if self.exposition == "underscores" else name

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = self._values
            histograms = {
                key: (hist.buckets(self._le), hist.total) for key, hist in self._histograms.items()
            }
        target = self._target()
        for name, doc, label_names, samples in self._gauges(values):
            family = GaugeMetricFamily(
                self._exposed(name), doc, labels=[*label_names, *_TARGET_LABELS]
            )
            for label_values, value in samples:
                family.add_metric([*label_values, *target], float(value))
            yield family
        series_names = sorted({name for name, _ in histograms})
        for name in series_names:
            family_h = HistogramMetricFamily(
                self._exposed(name),
                f"{name} (simulated)",
                labels=[*self._histogram_labels(), *_TARGET_LABELS],
            )
            for (hist_name, label_values), (buckets, total) in sorted(histograms.items()):
                if hist_name == name:
                    family_h.add_metric([*label_values, *target], buckets, total)
            yield family_h

    def _on_started(self) -> None:
        # Every histogram series exists from the first scrape, at zero, as the servers do.
        for name, labels in self._ttft_series():
            self._observe(name, labels, self.ttft_buckets, 0.0, 0)
        for name, labels in self._tpot_series():
            self._observe(name, labels, self.tpot_buckets, 0.0, 0)


class VllmServer(LlmServer):
    """vLLM (``vllm/v1/metrics/loggers.py``): ``splits`` data-parallel engines (``engine``)."""

    engine = "vllm"
    default_job = "vllm"
    ttft_buckets = VLLM_TTFT_BUCKETS
    tpot_buckets = VLLM_TPOT_BUCKETS

    def __init__(
        self,
        *,
        pod: str,
        namespace: str,
        cluster: str,
        model: str = "llama-3-8b",
        splits: int = 1,
        port: int = 0,
        job: str | None = None,
        exposition: Exposition = "negotiated",
        generation: VllmGeneration = "current",
    ) -> None:
        super().__init__(
            pod=pod, namespace=namespace, cluster=cluster, model=model, splits=splits, port=port,
            job=job, exposition=exposition,
        )  # fmt: skip
        self.generation = generation

    @property
    def kv_names(self) -> tuple[str, ...]:
        return {
            "current": ("vllm:kv_cache_usage_perc",),
            "transition": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            "legacy": ("vllm:gpu_cache_usage_perc",),
        }[self.generation]

    @property
    def tpot_names(self) -> tuple[str, ...]:
        return {
            "current": ("vllm:inter_token_latency_seconds",),
            "transition": (
                "vllm:inter_token_latency_seconds",
                "vllm:time_per_output_token_seconds",
            ),
            "legacy": ("vllm:time_per_output_token_seconds",),
        }[self.generation]

    def _labels(self, engine: int) -> tuple[str, ...]:
        return (self.model, str(engine))

    def _histogram_labels(self) -> tuple[str, ...]:
        return ("model_name", "engine")

    def _ttft_series(self) -> list[tuple[str, tuple[str, ...]]]:
        # Requests of this simulator are recorded on engine 0.
        return [("vllm:time_to_first_token_seconds", self._labels(0))]

    def _tpot_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(name, self._labels(0)) for name in self.tpot_names]

    def _gauges(self, values: EngineValues) -> Gauges:
        names = ("model_name", "engine")
        per = range(self.splits)
        yield (
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", names,
            [(self._labels(i), values.waiting[i]) for i in per],
        )  # fmt: skip
        yield (
            "vllm:num_requests_running", "Number of requests in model execution batches.", names,
            [(self._labels(i), values.running[i]) for i in per],
        )  # fmt: skip
        for kv_name in self.kv_names:
            yield (
                kv_name, "KV-cache usage. 1 means 100 percent usage.", names,
                [(self._labels(i), values.kv_cache[i]) for i in per],
            )  # fmt: skip


class SglangServer(LlmServer):
    """SGLang (``python/sglang/srt/metrics/collector.py``): ``splits`` data-parallel ranks, each
    of ``tp`` tensor-parallel ranks that all report their group's queue."""

    engine = "sglang"
    default_job = "sglang"
    ttft_buckets = SGLANG_TTFT_BUCKETS
    tpot_buckets = SGLANG_ITL_BUCKETS

    def __init__(
        self,
        *,
        pod: str,
        namespace: str,
        cluster: str,
        model: str = "llama-3-8b",
        splits: int = 1,
        port: int = 0,
        job: str | None = None,
        exposition: Exposition = "negotiated",
        tp: int = 2,
        legacy: bool = False,
        engine_type: str = "unified",
    ) -> None:
        if tp < 1:
            raise ValueError("tp must be >= 1")
        super().__init__(
            pod=pod, namespace=namespace, cluster=cluster, model=model, splits=splits, port=port,
            job=job, exposition=exposition,
        )  # fmt: skip
        self.tp = tp
        self.legacy = legacy
        self.engine_type = engine_type

    def _histogram_labels(self) -> tuple[str, ...]:
        return ("model_name", "engine_type")

    def _ttft_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("sglang:time_to_first_token_seconds", (self.model, self.engine_type))]

    def _tpot_series(self) -> list[tuple[str, tuple[str, ...]]]:
        name = (
            "sglang:time_per_output_token_seconds"
            if self.legacy
            else "sglang:inter_token_latency_seconds"
        )
        return [(name, (self.model, self.engine_type))]

    def _gauges(self, values: EngineValues) -> Gauges:
        dp = self.splits > 1
        names = ("model_name", "engine_type", "tp_rank", "pp_rank", *(("dp_rank",) if dp else ()))

        def ranks(per_dp: Sequence[float]) -> list[tuple[tuple[str, ...], float]]:
            return [
                (
                    (self.model, self.engine_type, str(tp), "0", *((str(d),) if dp else ())),
                    per_dp[d],
                )
                for d in range(self.splits)
                for tp in range(self.tp)
            ]

        yield ("sglang:num_queue_reqs", "The number of requests in the waiting queue.", names,
               ranks(values.waiting))  # fmt: skip
        yield ("sglang:num_running_reqs", "The number of running requests.", names,
               ranks(values.running))  # fmt: skip
        yield ("sglang:token_usage", "The token usage.", names, ranks(values.kv_cache))


class TgiServer(LlmServer):
    """Text Generation Inference (docs ``reference/metrics.md``): no labels of its own, no
    time-to-first-token histogram; ``tgi_request_mean_time_per_token_duration`` per request."""

    engine = "tgi"
    default_job = "tgi"
    tpot_buckets = TGI_DURATION_BUCKETS

    def _tpot_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("tgi_request_mean_time_per_token_duration", ())]

    def _gauges(self, values: EngineValues) -> Gauges:
        yield ("tgi_queue_size", "Current queue size", (), [((), sum(values.waiting))])
        yield ("tgi_batch_current_size", "Current batch size", (), [((), sum(values.running))])


class TritonTrtLlmServer(LlmServer):
    """Triton with the TensorRT-LLM backend (``custom_metrics_reporter.cc``): gauge families
    with ``model``, ``version`` and a type label. ``legacy``: a backend release without the
    ``waiting`` request type and the ``fraction`` KV-cache type. No latency histograms."""

    engine = "triton-trtllm"
    default_job = "triton"
    MAX_BLOCKS: ClassVar[int] = 4096
    TOKENS_PER_BLOCK: ClassVar[int] = 64
    MAX_REQUESTS: ClassVar[int] = 256

    def __init__(
        self,
        *,
        pod: str,
        namespace: str,
        cluster: str,
        model: str = "tensorrt_llm",
        splits: int = 1,
        port: int = 0,
        job: str | None = None,
        exposition: Exposition = "negotiated",
        legacy: bool = False,
    ) -> None:
        super().__init__(
            pod=pod, namespace=namespace, cluster=cluster, model=model, splits=splits, port=port,
            job=job, exposition=exposition,
        )  # fmt: skip
        self.legacy = legacy

    def used_blocks(self, values: EngineValues | None = None) -> int:
        """KV-cache blocks in use: ``round(kv_cache * MAX_BLOCKS)``."""
        v = values or self.values
        return round(sum(v.kv_cache) / len(v.kv_cache) * self.MAX_BLOCKS)

    def _gauges(self, values: EngineValues) -> Gauges:
        base = (self.model, "1")
        running, waiting = sum(values.running), sum(values.waiting)
        requests = {
            "active": running,
            "max": self.MAX_REQUESTS,
            "scheduled": running,
            "context": running // 4,
        }
        if not self.legacy:
            requests["waiting"] = waiting
        yield (
            "nv_trt_llm_request_metrics", "TRT LLM request metrics",
            ("model", "version", "request_type"),
            [((*base, kind), float(v)) for kind, v in requests.items()],
        )  # fmt: skip
        used = self.used_blocks(values)
        blocks: dict[str, float] = {
            "max": self.MAX_BLOCKS,
            "free": self.MAX_BLOCKS - used,
            "used": used,
            "tokens_per": self.TOKENS_PER_BLOCK,
        }
        if not self.legacy:
            blocks["fraction"] = used / self.MAX_BLOCKS
        yield (
            "nv_trt_llm_kv_cache_block_metrics", "TRT LLM KV cache block metrics",
            ("model", "version", "kv_cache_block_type"),
            [((*base, kind), float(v)) for kind, v in blocks.items()],
        )  # fmt: skip


class TrtllmServeServer(LlmServer):
    """``trtllm-serve`` (``tensorrt_llm/metrics/collector.py``), served at
    ``/prometheus/metrics`` (this simulator answers on any path)."""

    engine = "trtllm-serve"
    default_job = "trtllm-serve"
    ttft_buckets = VLLM_TTFT_BUCKETS
    tpot_buckets = VLLM_TPOT_BUCKETS

    def _histogram_labels(self) -> tuple[str, ...]:
        return ("model_name", "engine_type")

    def _ttft_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("trtllm_time_to_first_token_seconds", (self.model, "trtllm"))]

    def _tpot_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("trtllm_time_per_output_token_seconds", (self.model, "trtllm"))]

    def _gauges(self, values: EngineValues) -> Gauges:
        names = ("model_name", "engine_type")
        labels = (self.model, "trtllm")
        kv = sum(values.kv_cache) / len(values.kv_cache)
        yield ("trtllm_num_requests_waiting", "Number of queued requests", names,
               [(labels, sum(values.waiting))])  # fmt: skip
        yield ("trtllm_num_requests_running", "Number of active requests", names,
               [(labels, sum(values.running))])  # fmt: skip
        yield ("trtllm_kv_cache_utilization", "KV cache utilization", names, [(labels, kv)])


class NimServer(LlmServer):
    """NVIDIA NIM for LLMs (``/v1/metrics``): unprefixed names, ``model_name``."""

    engine = "nim"
    default_job = "nim"
    ttft_buckets = NIM_TTFT_BUCKETS
    tpot_buckets = NIM_TPOT_BUCKETS

    def _histogram_labels(self) -> tuple[str, ...]:
        return ("model_name",)

    def _ttft_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("time_to_first_token_seconds", (self.model,))]

    def _tpot_series(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("time_per_output_token_seconds", (self.model,))]

    def _gauges(self, values: EngineValues) -> Gauges:
        names = ("model_name",)
        labels = (self.model,)
        kv = sum(values.kv_cache) / len(values.kv_cache)
        yield ("num_requests_waiting", "Number of requests waiting to be processed", names,
               [(labels, sum(values.waiting))])  # fmt: skip
        yield ("num_requests_running", "Number of requests currently running on GPU", names,
               [(labels, sum(values.running))])  # fmt: skip
        yield ("num_request_max", "Max number of concurrently running requests", names,
               [(labels, 256)])  # fmt: skip
        yield ("gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage", names,
               [(labels, kv)])  # fmt: skip


class JetStreamServer(SimServer):
    """:class:`sim.jetstream.SimServer` with the common interface of :class:`LlmServer`:
    ``model`` becomes JetStream's ``model_name`` label, sanitized as JetStream does (``-``
    to ``_``); ``splits`` is the number of decode engines (``idx``)."""

    engine: ClassVar[str] = "jetstream"

    def __init__(
        self,
        *,
        pod: str,
        namespace: str,
        cluster: str,
        model: str | None = "gemma-7b",
        splits: int = 2,
        port: int = 0,
        job: str = "jetstream",
    ) -> None:
        super().__init__(
            pod=pod,
            namespace=namespace,
            cluster=cluster,
            engines=splits,
            port=port,
            job=job,
            model_name=model.replace("-", "_") if model else None,
        )
        self.model = self.model_name or ""
        self.splits = splits


ENGINES: Mapping[str, type[LlmServer] | type[JetStreamServer]] = {
    "jetstream": JetStreamServer,
    "vllm": VllmServer,
    "sglang": SglangServer,
    "tgi": TgiServer,
    "triton-trtllm": TritonTrtLlmServer,
    "trtllm-serve": TrtllmServeServer,
    "nim": NimServer,
}
"""Engine name → simulator class."""

AnyServer = LlmServer | JetStreamServer


@dataclass(frozen=True, slots=True)
class PodPlan:
    """One pod of a fleet: which engine, where, serving which model; ``options`` go to the
    simulator's constructor (``splits``, ``generation``, ``tp``, ``legacy``…)."""

    engine: str
    name: str
    namespace: str
    cluster: str = "demo"
    model: str | None = None
    options: Mapping[str, object] = field(default_factory=dict)


def make_server(plan: PodPlan) -> AnyServer:
    """The simulator for one :class:`PodPlan` (not started)."""
    try:
        cls = ENGINES[plan.engine]
    except KeyError:
        raise ValueError(f"unknown engine {plan.engine!r}; known: {sorted(ENGINES)}") from None
    kwargs: dict[str, Any] = dict(plan.options)
    if plan.model is not None:
        kwargs["model"] = plan.model
    server: AnyServer = cls(pod=plan.name, namespace=plan.namespace, cluster=plan.cluster, **kwargs)
    return server


class EngineFleet(Service):
    """Simulated servers of any engines, one per :class:`PodPlan`, started and stopped together.

    :meth:`step` moves every pod along :func:`sim.fleet.load_curve` (each with its own phase) and
    records a few requests' latencies that grow with the load.
    """

    def __init__(
        self, plans: Iterable[PodPlan], *, curve: Callable[..., float] = load_curve
    ) -> None:
        self.plans = tuple(plans)
        self._curve = curve
        self.servers: list[AnyServer] = [make_server(p) for p in self.plans]

    @property
    def targets(self) -> list[str]:
        """Every simulator's ``127.0.0.1:<port>`` (after :meth:`start`)."""
        return [s.target for s in self.servers]

    def start(self) -> Self:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def server(self, name: str, *, namespace: str, cluster: str | None = None) -> AnyServer:
        """The simulator of pod ``name`` in ``namespace`` (and ``cluster``)."""
        for server in self.servers:
            if (
                server.pod == name
                and server.namespace == namespace
                and (cluster is None or server.cluster == cluster)
            ):
                return server
        raise KeyError(f"no pod {name} in namespace {namespace}")

    def step(self, t: float) -> dict[str, float]:
        """Set every pod's load for time ``t`` (seconds) and record its requests' latencies;
        returns ``namespace/pod`` → load level."""
        levels: dict[str, float] = {}
        total = max(1, len(self.servers))
        for i, server in enumerate(self.servers):
            level = self._curve(t, phase=(i + 0.5) / total)
            server.load(level)
            requests = 1 + round(4 * level)
            server.observe_ttft(round(0.05 + 0.4 * level, 4), requests)
            server.observe_tpot(round(0.02 + 0.05 * level, 4), requests * 8)
            levels[f"{server.namespace}/{server.pod}"] = level
        return levels


# --------------------------------------------------------------------------------------------
# NVIDIA dcgm-exporter


@dataclass(frozen=True, slots=True)
class GpuValues:
    """One GPU as dcgm-exporter reports it: utilisation in percent, frame buffer in MiB; the
    workload's pod, namespace and container come from its Kubernetes mapping."""

    namespace: str
    pod: str
    gpu: str
    util: float
    fb_used: float
    fb_free: float
    container: str = "inference-server"
    model_name: str = "NVIDIA L4"


class SimDcgmExporter(_Exporter):
    """NVIDIA dcgm-exporter with its Kubernetes mapping, as a scrape that keeps its own target
    labels stores it (GMP always does; Prometheus with ``honor_labels: false``): the exporter's
    ``pod``, ``namespace`` and ``container`` labels arrive as ``exported_pod``,
    ``exported_namespace`` and ``exported_container``, while ``namespace``/``pod`` name the
    exporter's own pod (in ``gpu-operator``)."""

    _LABELS = (
        "gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION",
        "exported_container", "exported_namespace", "exported_pod", *_TARGET_LABELS,
    )  # fmt: skip

    def __init__(
        self,
        *,
        cluster: str,
        port: int = 0,
        exporter_pod: str = "nvidia-dcgm-exporter-0",
        exporter_namespace: str = "gpu-operator",
        job: str = "nvidia-dcgm-exporter",
    ) -> None:
        super().__init__(port=port)
        self.cluster = cluster
        self.exporter_pod = exporter_pod
        self.exporter_namespace = exporter_namespace
        self.job = job
        self._lock = threading.Lock()
        self._gpus: dict[tuple[str, str, str], GpuValues] = {}
        self.registry.register(self)

    @property
    def gpus(self) -> tuple[GpuValues, ...]:
        with self._lock:
            return tuple(self._gpus.values())

    def set_gpu(self, gpu: GpuValues) -> None:
        """Export (or update) one GPU's fields."""
        with self._lock:
            self._gpus[(gpu.namespace, gpu.pod, gpu.gpu)] = gpu

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        port = self._port if self._server is not None else 0
        target = (
            self.cluster, self.exporter_namespace, self.exporter_pod,
            f"{self.exporter_pod}:{port}", self.job,
        )  # fmt: skip
        families: dict[str, tuple[str, Callable[[GpuValues], float]]] = {
            "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", lambda g: g.util),
            "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", lambda g: g.fb_used),
            "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", lambda g: g.fb_free),
        }
        gpus = self.gpus
        for name, (doc, value) in families.items():
            family = GaugeMetricFamily(name, doc, labels=list(self._LABELS))
            for g in gpus:
                labels = (
                    g.gpu, f"GPU-{g.pod}-{g.gpu}", f"00000000:00:0{g.gpu}.0", f"nvidia{g.gpu}",
                    g.model_name, "gke-node-0", "535.104.05", g.container, g.namespace, g.pod,
                    *target,
                )  # fmt: skip
                family.add_metric(list(labels), float(value(g)))
            yield family


# --------------------------------------------------------------------------------------------
# The demo's engines

DEMO_PLANS: tuple[PodPlan, ...] = (
    PodPlan("vllm", "vllm-0", "default", "demo", "llama-3-8b", {"splits": 2}),
    PodPlan("sglang", "sglang-0", "default", "demo", "qwen-2-7b", {"tp": 2}),
    PodPlan("tgi", "tgi-0", "other", "demo"),
    PodPlan("nim", "nim-0", "other", "demo", "llama-3-70b"),
)
"""Pods ``make demo`` runs next to its JetStream fleet: a mixed namespace (``default``: JetStream,
vLLM, SGLang) and ``other`` (JetStream, TGI, NIM)."""

DEMO_TARGETS: Mapping[str, float] = {
    "llm_requests_waiting": 4.0,
    "vllm:num_requests_waiting": 4.0,
    "sglang:num_queue_reqs": 4.0,
    "llm_kv_cache_utilization": 0.8,
    "llm_time_to_first_token_p95_seconds": 0.5,
}
"""External metrics the demo shows for these engines, with the target an example HPA would use
(an ``AverageValue`` per replica; a ``Value`` for the latency percentile)."""

DEMO_VALUE_TARGETS = frozenset({"llm_time_to_first_token_p95_seconds"})
