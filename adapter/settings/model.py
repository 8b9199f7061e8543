"""Process settings: flags and their ``LMA_*`` environment variables (see docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GMP_DEFAULT_MAX_SAMPLE_AGE", "Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    # Backend
    prometheus_url: str = "http://127.0.0.1:9090"
    """Base URL of a Prometheus-compatible query API (Prometheus, Thanos, the GMP frontend)."""
    prometheus_bearer_token_file: str | None = None
    """File holding a bearer token; re-read when it changes."""
    prometheus_ca_file: str | None = None
    prometheus_insecure_skip_verify: bool = False
    prometheus_headers: dict[str, str] = field(default_factory=dict)
    prometheus_method: str = "GET"
    query_timeout: float = 10.0
    """Seconds for one backend call, retries included."""

    # Rules and scope
    config: str | None = None
    """Rules file: native or prometheus-adapter format (detected)."""
    presets: bool = True
    """Serve the built-in JetStream and TPU presets."""
    cluster: str | None = None
    """When set, every query gets ``cluster="<cluster>"``."""
    cluster_label: str = "cluster"

    # Serving
    host: str = "0.0.0.0"
    port: int = 6443
    standalone: bool = False
    """Plain HTTP on loopback, no Kubernetes, no auth: for local use and the demo."""
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None

    # Freshness
    cache_ttl: float = 5.0
    """Seconds a backend answer is reused; keep it at or below the scrape interval."""
    cache_keep_warm: float = 60.0
    """Seconds: periodic queries asked within this window are prefetched before their next
    request (0: off)."""
    max_sample_age: float | None = None
    """Seconds; older samples are not served (GMP keeps dead pods' series). None: no limit."""
    discovery_interval: float = 60.0
    """Seconds between background discovery refreshes."""

    log_level: str = "info"

    # Kubernetes and delegated authentication (serving mode; unused with ``standalone``)
    kubeconfig: str | None = None
    """Kubeconfig file; ``None``: the in-cluster service account."""
    auth_cache_ttl: float = 10.0
    """Seconds TokenReview and SubjectAccessReview answers (allowed and denied) are reused."""
    tls_reload_interval: float = 5.0
    """Seconds between checks of the serving certificate files for a rotation."""
    shutdown_timeout: float = 10.0
    """Seconds in-flight requests may take to finish after SIGTERM."""

    # Google Managed Service for Prometheus, queried directly (no frontend proxy)
    gmp_project: str | None = None
    """Project whose GMP PromQL API is queried with Google credentials; replaces prometheus_url."""
    gmp_credentials_file: str | None = None
    """Google credentials file (service-account key...). ``None``: Application Default
    Credentials (Workload Identity on GKE, or ``GOOGLE_APPLICATION_CREDENTIALS``)."""
    gmp_token_refresh_margin: float = 300.0
    """Seconds before an access token expires at which it is replaced."""
    gmp_base_url: str = "https://monitoring.googleapis.com"
    """For tests only: where GMP's API is reached (a local proxy). Users never change it."""

    # Failure policy, rules reload, logs
    stale_if_error: float = 0.0
    """Seconds: when a backend query fails, serve the last good answer for it if at most this
    old (marked stale in /debug/query). 0: off, the request fails at once."""
    circuit_failures: int = 5
    """Consecutive failed queries that open a backend's circuit breaker; 0 disables it."""
    circuit_cooldown: float = 5.0
    """Seconds an open circuit refuses queries before one probe; doubles per failed probe."""
    circuit_max_cooldown: float = 60.0
    """Seconds: the cap of the doubling cool-down."""
    rules_reload_interval: float = 2.0
    """Seconds between checks of the rules file for a change; 0 disables reloading."""
    log_format: str = "auto"
    """``json``, ``text``, or ``auto`` (JSON unless stderr is a terminal)."""

    # Stackdriver-style names (prometheus.googleapis.com|<metric>|gauge), see docs/cloud-monitoring.md
    stackdriver_names: str = "auto"
    """``cloud-monitoring``, ``promql``, ``off``, or ``auto``: Cloud Monitoring when a project is
    configured (``cloud_monitoring_project`` or ``gmp_project``), else PromQL."""
    cloud_monitoring_project: str | None = None
    """Project read through the Cloud Monitoring API; defaults to ``gmp_project``."""
    cloud_monitoring_location: str | None = None
    """The cluster's location (zone or region); filtered on as ``resource.labels.location``."""
    stackdriver_window: int = 120
    """Seconds. Cloud Monitoring lookback for gauges (newest point in it); PromQL rate window."""
    cloud_monitoring_alignment_period: int = 60
    """Seconds. Alignment period of ``ALIGN_RATE`` for counters in Cloud Monitoring mode."""

    def __post_init__(self) -> None:
        # GMP has no staleness: a deleted pod's series answers its last value for the whole
        # 5-minute lookback. Unless told otherwise, GMP mode refuses samples older than
        # GMP_DEFAULT_MAX_SAMPLE_AGE seconds (see docs/migration.md for why that value).
        if self.gmp_project and self.max_sample_age is None:
            object.__setattr__(self, "max_sample_age", GMP_DEFAULT_MAX_SAMPLE_AGE)


GMP_DEFAULT_MAX_SAMPLE_AGE = 240.0
"""Seconds. System metrics are sampled every 60 s and may lag up to 120 s, so their newest value
can be 180 s old; 60 s more of margin, and still below the 300 s lookback in which GMP keeps
answering for series that stopped."""
