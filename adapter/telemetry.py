"""The adapter's own metrics, served on ``/metrics``.

One :class:`Telemetry` per app, on its own ``CollectorRegistry``, so tests can run several apps
in one process without collisions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Telemetry"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_AGE_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_metrics_adapter_requests_total",
            "API requests by API group, route and HTTP code.",
            ["group", "route", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "llm_metrics_adapter_request_duration_seconds",
            "Server time per API request, seconds.",
            ["group", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_queries = Counter(
            "llm_metrics_adapter_backend_queries_total",
            "Backend queries by backend and outcome (ok, or the error class).",
            ["backend", "outcome"],
            registry=r,
        )
        self.backend_seconds = Histogram(
            "llm_metrics_adapter_backend_query_duration_seconds",
            "Backend query round trip, seconds.",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "llm_metrics_adapter_cache_requests_total",
            "Result cache lookups: hit, miss, shared (joined an in-flight query), disabled.",
            ["result"],
            registry=r,
        )
        self.value_age = Histogram(
            "llm_metrics_adapter_value_age_seconds",
            "Age of served values (request time minus sample time), seconds.",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.dropped = Counter(
            "llm_metrics_adapter_dropped_samples_total",
            "Backend samples not served, by reason (non-finite, too-old, duplicate, ...).",
            ["reason"],
            registry=r,
        )
        self.discovery_success = Gauge(
            "llm_metrics_adapter_discovery_last_success_timestamp_seconds",
            "Unix time of the last discovery refresh without errors.",
            registry=r,
        )
        self.discovery_errors = Counter(
            "llm_metrics_adapter_discovery_errors_total",
            "Discovery refreshes that failed for at least one rule.",
            registry=r,
        )
        self.served_metrics = Gauge(
            "llm_metrics_adapter_served_metrics",
            "Metrics currently listed, by API group.",
            ["group"],
            registry=r,
        )
