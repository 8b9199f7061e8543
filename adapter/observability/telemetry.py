"""The adapter's own metrics, served on ``/metrics``.

One :class:`Telemetry` per app, on its own ``CollectorRegistry``, so tests can run several apps
in one process without collisions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Telemetry"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_AGE_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600)


class Telemetry:
    """Every metric the adapter exports; attribute names are the instruments' short names.

    ``auth_decisions`` is for the auth middleware: ``.labels(result, authenticator).inc()`` with
    ``result`` one of ``allowed``, ``denied``, ``unauthenticated``, ``error``.
    """

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
        self._scrape_instruments(r)
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
        self.rule_reloads = Counter(
            "llm_metrics_adapter_rule_reloads_total",
            "Rules file reloads by result: ok (applied) or error (the last good rules kept).",
            ["result"],
            registry=r,
        )
        self.rules_reload_success = Gauge(
            "llm_metrics_adapter_rules_last_reload_success_timestamp_seconds",
            "Unix time the rules file was last loaded and applied (the initial load counts).",
            registry=r,
        )
        self.stale_answers = Counter(
            "llm_metrics_adapter_stale_answers_total",
            "Answers served from the last good backend answer because a fetch failed.",
            ["backend"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "llm_metrics_adapter_backend_circuit_state",
            "Backend circuit breaker: 0 closed, 1 half-open (one probe allowed), 2 open.",
            ["backend"],
            registry=r,
        )
        self.circuit_rejections = Counter(
            "llm_metrics_adapter_backend_circuit_rejections_total",
            "Backend queries refused without being sent because the circuit was open.",
            ["backend"],
            registry=r,
        )
        self.auth_decisions = Counter(
            "llm_metrics_adapter_auth_decisions_total",
            "Authentication and authorization decisions: allowed, denied, unauthenticated or error, by"
            " authenticator (front-proxy, client-cert, token, anonymous, ...).",
            ["result", "authenticator"],
            registry=r,
        )

    def _scrape_instruments(self, r: CollectorRegistry) -> None:
        """The pod-scrape path's (``--scrape-pods``)."""
        self.scrapes = Counter(
            "llm_metrics_adapter_scrapes_total",
            "Pod scrapes (--scrape-pods) by result: ok, timeout, unreachable, http_4xx, http_5xx,"
            " too_large, invalid.",
            ["result"],
            registry=r,
        )
        self.scrape_seconds = Histogram(
            "llm_metrics_adapter_scrape_duration_seconds",
            "Pod scrape round trip, seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
