"""Simulated exporters: a JetStream server per pod and the GKE TPU device plugin.

Each simulator is its own ``prometheus_client`` registry behind its own HTTP server on
127.0.0.1, so Prometheus scrapes each as a separate target, as it would scrape separate pods.
Every series carries the labels GMP's scrape would attach (``cluster``, ``namespace``, ``pod``,
``instance``, ``job``); with ``honor_labels: true`` a local Prometheus keeps them as sent.
The HTTP servers run in daemon threads: they die with the process even if never stopped.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sim.service import Service

__all__ = [
    "TPOT_BUCKETS",
    "TTFT_BUCKETS",
    "JetStreamValues",
    "SimServer",
    "SimTpuExporter",
    "TpuChipValues",
    "values_for_load",
]

_TARGET_LABELS = ("cluster", "namespace", "pod", "instance", "job")
# JetStream's own bucket boundaries (jetstream/core/metrics/prometheus.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class JetStreamValues:
    """The gauge values one simulated JetStream pod exports.

    ``slots`` is one 0–1 fraction per generate engine (``idx``); ``transfer_backlog`` and
    ``generate_backlog`` are one queue size per engine; ``kv_cache`` is a 0–1 fraction, which
    the server exports as a percentage: ``kv_cache_utilization_perc`` = 100 × ``kv_cache``
    (JetStream computes ``(total_slots - empty_slots) * 100 / total_slots``).
    """

    prefill_backlog: int
    slots: tuple[float, ...]
    transfer_backlog: tuple[int, ...]
    generate_backlog: tuple[int, ...]
    requests_waiting: int
    kv_cache: float


def values_for_load(level: float, *, engines: int) -> JetStreamValues:
    """The gauges a pod shows at ``level`` (0 = idle, 1 = saturated, >1 = overloaded).

    Deterministic, so a demo or test can compute what Prometheus should report: prefill backlog
    ``round(20*level)``; engine ``i`` fills to ``min(1, level*(1 - 0.1*i))``; generate backlog per
    engine ``round(4*max(0, level-0.8)*10)``; transfer backlog half of that; requests waiting the
    sum of the backlogs; KV-cache utilisation the mean slot fraction.
    """
    if not math.isfinite(level) or level < 0:
        raise ValueError(f"load level must be a finite number >= 0, got {level!r}")
    if engines < 1:
        raise ValueError("engines must be >= 1")
    slots = tuple(round(min(1.0, level * (1.0 - 0.1 * (i % 5))), 4) for i in range(engines))
    generate = tuple(round(4 * max(0.0, level - 0.8) * 10) for _ in range(engines))
    transfer = tuple(g // 2 for g in generate)
    prefill = round(20 * level)
    return JetStreamValues(
        prefill_backlog=prefill,
        slots=slots,
        transfer_backlog=transfer,
        generate_backlog=generate,
        requests_waiting=prefill + sum(generate),
        kv_cache=round(sum(slots) / engines, 4),
    )


class _Exporter(Service):
    """One registry behind one loopback HTTP server."""

    def __init__(self, *, port: int, host: str = "127.0.0.1") -> None:
        if not host.startswith("127."):
            raise ValueError(f"exporters bind loopback only, not {host}")
        self.registry = CollectorRegistry(auto_describe=True)
        self._port = port
        self.host = host
        """The loopback address served (any of 127.0.0.0/8: a pod IP of its own)."""
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind ``host`` and serve ``/metrics`` (any path) from a daemon thread."""
        if self._server is None:
            self._server, self._thread = start_http_server(
                self._port, addr=self.host, registry=self.registry
            )
            self._port = self._server.server_port
            self._on_started()
        return self

    def _on_started(self) -> None:
        """Hook: the port is known now."""

    def stop(self) -> None:
        """Stop serving (a scrape then fails, like a deleted pod). Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("exporter is not started")
        return self._port

    @property
    def target(self) -> str:
        """``<host>:<port>``: what a scrape config lists."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"


class SimServer(_Exporter):
    """One simulated JetStream pod exporting JetStream's metric names and labels.

    Every series has ``id`` = the pod name plus the target labels ``cluster``, ``namespace``,
    ``pod``, ``instance`` (``pod:port``) and ``job``; with ``model_name`` also JetStream's
    ``model_name`` label (JetStream replaces ``-`` by ``_`` in it, so pass it sanitized). Values
    start at zero (idle); set them exactly with the setters or derive them all from a load level
    with :meth:`load`. The latency histograms (``jetstream_time_to_first_token``,
    ``jetstream_time_per_output_token``) have JetStream's bucket boundaries.
    """

    def __init__(
        self,
        *,
        pod: str,
        namespace: str,
        cluster: str,
        engines: int = 2,
        port: int = 0,
        host: str = "127.0.0.1",
        job: str = "jetstream",
        model_name: str | None = None,
    ) -> None:
        if engines < 1:
            raise ValueError("engines must be >= 1")
        super().__init__(port=port, host=host)
        self.pod = pod
        self.namespace = namespace
        self.cluster = cluster
        self.engines = engines
        self.job = job
        self.model_name = model_name
        self._lock = threading.Lock()
        self._values = values_for_load(0.0, engines=engines)
        self._successes = 0.0
        self._published_successes = 0.0
        names = ("id", *(("model_name",) if model_name is not None else ()), *_TARGET_LABELS)
        reg = self.registry
        self._prefill = Gauge(
            "jetstream_prefill_backlog_size", "Size of prefill queue", names, registry=reg
        )
        self._slots = Gauge(
            "jetstream_slots_used_percentage",
            "The percentage of decode slots currently being used",
            (*names, "idx"),
            registry=reg,
        )
        self._transfer = Gauge(
            "jetstream_transfer_backlog_size",
            "Size of transfer queue",
            (*names, "idx"),
            registry=reg,
        )
        self._generate = Gauge(
            "jetstream_generate_backlog_size",
            "Size of generate queue",
            (*names, "idx"),
            registry=reg,
        )
        self._waiting = Gauge(
            "num_requests_waiting",
            "Number of requests waiting to be processed",
            names,
            registry=reg,
        )
        self._kv = Gauge(
            "kv_cache_utilization_perc",
            "kv-cache utilization % by the requests under processing.",
            names,
            registry=reg,
        )
        self._success = Counter(
            "jetstream_request_success_count",
            "Number of requests successfully completed",
            names,
            registry=reg,
        )
        self._ttft = Histogram(
            "jetstream_time_to_first_token",
            "Time to first token per request in seconds",
            names,
            registry=reg,
            buckets=TTFT_BUCKETS,
        )
        self._tpot = Histogram(
            "jetstream_time_per_output_token",
            "Average time per output token per request in seconds",
            names,
            registry=reg,
            buckets=TPOT_BUCKETS,
        )

    def _label_values(self) -> tuple[str, ...]:
        # Before start the port is unknown; instance is set once it is (see _on_started).
        port = self._port if self._server is not None else 0
        model = (self.model_name,) if self.model_name is not None else ()
        return (
            self.pod, *model, self.cluster, self.namespace, self.pod, f"{self.pod}:{port}",
            self.job,
        )  # fmt: skip

    def _on_started(self) -> None:
        self._publish()

    @property
    def values(self) -> JetStreamValues:
        """The gauge values currently exported."""
        with self._lock:
            return self._values

    @property
    def successes(self) -> float:
        """The value of ``jetstream_request_success_count_total``."""
        with self._lock:
            return self._successes

    def set_values(self, values: JetStreamValues) -> None:
        """Export exactly ``values`` (one slot/backlog entry per engine)."""
        for what in (values.slots, values.transfer_backlog, values.generate_backlog):
            if len(what) != self.engines:
                raise ValueError(f"need one value per engine ({self.engines}), got {len(what)}")
        with self._lock:
            self._values = values
        self._publish()

    def _replace(self, **changes: object) -> None:
        with self._lock:
            current = self._values
        fields = {
            "prefill_backlog": current.prefill_backlog,
            "slots": current.slots,
            "transfer_backlog": current.transfer_backlog,
            "generate_backlog": current.generate_backlog,
            "requests_waiting": current.requests_waiting,
            "kv_cache": current.kv_cache,
        }
        fields.update(changes)
        self.set_values(JetStreamValues(**fields))  # type: ignore[arg-type]

    def set_backlog(self, n: int) -> None:
        """``jetstream_prefill_backlog_size``."""
        self._replace(prefill_backlog=int(n))

    def set_slots(self, fractions: Sequence[float]) -> None:
        """``jetstream_slots_used_percentage{idx}``: one 0–1 fraction per engine."""
        if any(not 0.0 <= f <= 1.0 for f in fractions):
            raise ValueError("slot fractions must be within 0..1")
        self._replace(slots=tuple(float(f) for f in fractions))

    def set_transfer_backlog(self, sizes: Sequence[int]) -> None:
        self._replace(transfer_backlog=tuple(int(s) for s in sizes))

    def set_generate_backlog(self, sizes: Sequence[int]) -> None:
        self._replace(generate_backlog=tuple(int(s) for s in sizes))

    def set_requests_waiting(self, n: int) -> None:
        """``num_requests_waiting``."""
        self._replace(requests_waiting=int(n))

    def set_kv_cache(self, fraction: float) -> None:
        """``kv_cache_utilization_perc`` = 100 × ``fraction`` (``fraction`` is 0–1)."""
        self._replace(kv_cache=float(fraction))

    def add_successes(self, n: float = 1.0) -> None:
        """Increase ``jetstream_request_success_count_total`` by ``n``."""
        if n < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._successes += n
        self._publish()

    def observe_ttft(self, seconds: float, count: int = 1) -> None:
        """Record ``count`` time-to-first-token observations of ``seconds`` (after
        :meth:`start`)."""
        self._observe(self._ttft, seconds, count)

    def observe_tpot(self, seconds: float, count: int = 1) -> None:
        """Record ``count`` time-per-output-token observations of ``seconds`` (after
        :meth:`start`)."""
        self._observe(self._tpot, seconds, count)

    def _observe(self, histogram: Histogram, seconds: float, count: int) -> None:
        if self._server is None:
            raise RuntimeError(
                "start the server before observing (the instance label needs its port)"
            )
        child = histogram.labels(*self._label_values())
        for _ in range(count):
            child.observe(seconds)

    def load(self, level: float) -> JetStreamValues:
        """Set every gauge from a load level (see :func:`values_for_load`); returns the values."""
        values = values_for_load(level, engines=self.engines)
        self.set_values(values)
        return values

    def _publish(self) -> None:
        if self._server is None:
            return  # published on start, when the instance label is known
        base = self._label_values()
        with self._lock:
            v = self._values
            successes = self._successes
        self._prefill.labels(*base).set(v.prefill_backlog)
        for idx in range(self.engines):
            self._slots.labels(*base, str(idx)).set(v.slots[idx])
            self._transfer.labels(*base, str(idx)).set(v.transfer_backlog[idx])
            self._generate.labels(*base, str(idx)).set(v.generate_backlog[idx])
        self._waiting.labels(*base).set(v.requests_waiting)
        self._kv.labels(*base).set(round(100 * v.kv_cache, 6))
        # Children are created here so every series exists from the first scrape.
        counter = self._success.labels(*base)
        with self._lock:
            step = successes - self._published_successes
            self._published_successes = successes
        if step > 0:
            counter.inc(step)
        self._ttft.labels(*base)
        self._tpot.labels(*base)


@dataclass(frozen=True, slots=True)
class TpuChipValues:
    """One TPU chip as the device plugin reports it; memory in bytes, utilisations in percent."""

    namespace: str
    pod: str
    accelerator_id: str
    memory_used: float
    memory_total: float
    duty_cycle: float
    tensorcore_utilization: float
    container: str = "jetstream-http"
    model: str = "tpu-v5-lite-podslice"
    tpu_topology: str = "2x4"


class SimTpuExporter(_Exporter):
    """The GKE TPU device plugin's metrics endpoint, as scraped by a PodMonitoring in kube-system.

    Series carry ``namespace="kube-system"`` and ``pod`` = the device-plugin pod (the scrape
    target), while the workload's namespace and pod arrive as ``exported_namespace`` and
    ``exported_pod`` — what Prometheus' label-collision renaming produces on GMP.
    """

    _LABELS = (
        "accelerator_id",
        "container",
        "make",
        "model",
        "tpu_topology",
        "exported_namespace",
        "exported_pod",
        *_TARGET_LABELS,
    )

    def __init__(
        self,
        *,
        cluster: str,
        port: int = 0,
        host: str = "127.0.0.1",
        plugin_pod: str = "tpu-device-plugin-0",
        job: str = "tpu-device-plugin",
    ) -> None:
        super().__init__(port=port, host=host)
        self.cluster = cluster
        self.plugin_pod = plugin_pod
        self.job = job
        self._lock = threading.Lock()
        self._chips: dict[tuple[str, str, str], TpuChipValues] = {}
        reg = self.registry
        self._gauges = {
            "memory_used": Gauge(
                "memory_used", "TPU memory used (bytes)", self._LABELS, registry=reg
            ),
            "memory_total": Gauge(
                "memory_total", "TPU memory total (bytes)", self._LABELS, registry=reg
            ),
            "duty_cycle": Gauge("duty_cycle", "TPU duty cycle (%)", self._LABELS, registry=reg),
            "tensorcore_utilization": Gauge(
                "tensorcore_utilization", "TensorCore utilization (%)", self._LABELS, registry=reg
            ),
        }

    @property
    def chips(self) -> tuple[TpuChipValues, ...]:
        with self._lock:
            return tuple(self._chips.values())

    def _label_values(self, chip: TpuChipValues) -> tuple[str, ...]:
        port = self._port if self._server is not None else 0
        return (
            chip.accelerator_id,
            chip.container,
            "cloud-tpu",
            chip.model,
            chip.tpu_topology,
            chip.namespace,
            chip.pod,
            self.cluster,
            "kube-system",
            self.plugin_pod,
            f"{self.plugin_pod}:{port}",
            self.job,
        )

    def set_chip(self, chip: TpuChipValues) -> None:
        """Export (or update) one chip's gauges."""
        key = (chip.namespace, chip.pod, chip.accelerator_id)
        with self._lock:
            old = self._chips.get(key)
            self._chips[key] = chip
        if old is not None and self._server is not None:
            self._remove(old)
        self._publish_chip(chip)

    def remove_chip(self, *, namespace: str, pod: str, accelerator_id: str) -> None:
        """Stop exporting one chip's series (the pod went away)."""
        with self._lock:
            old = self._chips.pop((namespace, pod, accelerator_id), None)
        if old is not None and self._server is not None:
            self._remove(old)

    def _remove(self, chip: TpuChipValues) -> None:
        for gauge in self._gauges.values():
            with contextlib.suppress(KeyError):  # never published (set before start)
                gauge.remove(*self._label_values(chip))

    def _publish_chip(self, chip: TpuChipValues) -> None:
        if self._server is None:
            return
        labels = self._label_values(chip)
        self._gauges["memory_used"].labels(*labels).set(chip.memory_used)
        self._gauges["memory_total"].labels(*labels).set(chip.memory_total)
        self._gauges["duty_cycle"].labels(*labels).set(chip.duty_cycle)
        self._gauges["tensorcore_utilization"].labels(*labels).set(chip.tensorcore_utilization)

    def _on_started(self) -> None:
        for chip in self.chips:
            self._publish_chip(chip)
