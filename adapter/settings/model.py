"""Process settings, grouped: one frozen dataclass per concern, composed into :class:`Settings`.

Each field is described once, with :func:`setting`: its default, the help text of its flag and,
where they differ from the field name, its flat option name (``Settings.from_options``) and its
flag. The ``serve`` command's flags, their ``LMA_*`` environment variables, defaults and help
panels are generated from this description (:func:`options`); docs/configuration.md lists them.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from adapter.settings.endpoints import GoogleEndpoints, parse_google_endpoints

__all__ = [
    "GMP_DEFAULT_MAX_SAMPLE_AGE",
    "AuthSettings",
    "BackendSettings",
    "CacheSettings",
    "CloudMonitoringSettings",
    "GmpSettings",
    "LoggingSettings",
    "Option",
    "ResilienceSettings",
    "RulesSettings",
    "ScopeSettings",
    "ServingSettings",
    "Settings",
    "options",
    "parse_headers",
]

GMP_DEFAULT_MAX_SAMPLE_AGE = 240.0
"""Seconds. System metrics are sampled every 60 s and may lag up to 120 s, so their newest value
can be 180 s old; 60 s more of margin, and still below the 300 s lookback in which GMP keeps
answering for series that stopped."""

_NO_FLAG = ""
_SAME = object()


def describe(
    help: str = _NO_FLAG,
    *,
    option: str | None = None,
    flag: str | None = None,
    flag_default: Any = _SAME,
    flag_type: Any = None,
    env_separator: str | None = None,
    parse: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """The metadata describing a settings field on the command line.

    ``help``: the flag's help text; empty for a setting that has no flag. ``option``: the flat
    option name (``Settings.from_options``), default the field name. ``flag``: the flag without
    its dashes, default the option name with ``-`` for ``_``; the environment variable is
    ``LMA_<FLAG>``. ``flag_default``: the flag's default where it is not the field's (``None``:
    decided by :meth:`Settings.from_options`). ``flag_type``: the flag's type where it is not the
    field's, with ``env_separator`` splitting a repeatable flag's environment variable, and
    ``parse`` turning the flag's value into the field's (``ValueError`` for a bad one).
    """
    return {
        "help": help,
        "option": option,
        "flag": flag,
        "flag_default": flag_default,
        "flag_type": flag_type,
        "env_separator": env_separator,
        "parse": parse,
    }


def setting(default: Any = None, help: str = _NO_FLAG, **described: Any) -> Any:
    """A settings field with an immutable ``default``, described by :func:`describe`."""
    return field(default=default, metadata=describe(help, **described))


def _panel(title: str) -> dict[str, str]:
    """The metadata of a group of :class:`Settings`: ``title`` heads its flags in ``--help``."""
    return {"panel": title}


def parse_headers(values: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """``["Name: value", ...]`` as a dict (a mapping is taken as is); ``ValueError`` for an item
    without a name."""
    if isinstance(values, Mapping):
        return dict(values)
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"expected 'Name: value', got {name.strip()!r}…")
        headers[name.strip()] = value.strip()
    return headers


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """The Prometheus-compatible backend (Prometheus, Thanos, the GMP frontend)."""

    prometheus_url: str = setting(
        "http://127.0.0.1:9090", "Prometheus-compatible query API base URL."
    )
    prometheus_bearer_token_file: str | None = setting(
        None, "File holding a bearer token for the backend; re-read when it changes."
    )
    prometheus_ca_file: str | None = setting(None, "CA bundle (PEM) to verify the backend.")
    prometheus_insecure_skip_verify: bool = setting(
        False, "Do not verify the backend's TLS certificate (testing only)."
    )
    prometheus_headers: dict[str, str] = field(
        default_factory=dict,
        metadata=describe(
            "Extra header 'Name: value' (repeatable; in the environment variable, one per"
            " line). Never logged.",
            flag="prometheus-header",
            flag_default=None,
            flag_type=list[str] | None,
            env_separator="\n",
            parse=parse_headers,
        ),
    )
    prometheus_method: str = setting("GET", "GET or POST for /api/v1/query.")
    query_timeout: float = setting(10.0, "Seconds per backend call.")
    """Seconds for one backend call, retries included."""


@dataclass(frozen=True, slots=True)
class GmpSettings:
    """Google Managed Service for Prometheus, queried directly (no frontend proxy)."""

    project: str | None = setting(
        None,
        "Query this project's Google Managed Prometheus directly with Google credentials "
        "(Workload Identity / Application Default Credentials); replaces --prometheus-url.",
        option="gmp_project",
    )
    credentials_file: str | None = setting(
        None,
        "Google credentials file for --gmp-project. Default: Application Default Credentials.",
        option="gmp_credentials_file",
    )
    """``None``: Application Default Credentials (Workload Identity on GKE, or
    ``GOOGLE_APPLICATION_CREDENTIALS``)."""
    token_refresh_margin: float = setting(300.0, option="gmp_token_refresh_margin")
    """Seconds before an access token expires at which it is replaced."""
    endpoints: GoogleEndpoints = field(
        default_factory=GoogleEndpoints,
        metadata=describe(
            "For tests: reach Google's endpoints at local stand-ins, as gmp=URL,token=URL,"
            "metadata=URL,cloud-monitoring=URL (any of them). Never set in production.",
            option="google_endpoints",
            flag_default=None,
            flag_type=str | None,
            parse=parse_google_endpoints,
        ),
    )
    """GMP's query API, the token endpoint, the metadata server, Cloud Monitoring: Google's own
    unless a test points them at stand-ins (:mod:`adapter.settings.endpoints`)."""


@dataclass(frozen=True, slots=True)
class ScopeSettings:
    """What every query is scoped to."""

    cluster: str | None = setting(
        None,
        'Scope every query to cluster="<name>". Serving in a cluster: default the GKE metadata'
        " server's cluster-name; without either, serve refuses to start.",
    )
    cluster_label: str = "cluster"
    """The label ``cluster`` is matched on."""
    all_clusters: bool = setting(
        False,
        "Read every cluster's series: no cluster= scope (only for an adapter that serves"
        " several clusters on purpose).",
    )


@dataclass(frozen=True, slots=True)
class RulesSettings:
    """Which rules are served."""

    config: str | None = setting(None, "Rules file (native or prometheus-adapter format).")
    """Native or prometheus-adapter format (detected)."""
    presets: bool = setting(True, "Serve the built-in JetStream and TPU presets.")
    reload_interval: float = setting(
        2.0,
        "Seconds between checks of --config for a change (0: no reload).",
        option="rules_reload_interval",
    )


@dataclass(frozen=True, slots=True)
class CloudMonitoringSettings:
    """Stackdriver-style names (``prometheus.googleapis.com|<metric>|gauge``), see
    docs/cloud-monitoring.md."""

    stackdriver_names: str = setting(
        "auto",
        "Stackdriver-style names (prometheus.googleapis.com|<metric>|gauge): "
        "cloud-monitoring, promql, off, or auto (Cloud Monitoring when a project is set).",
    )
    """``auto``: Cloud Monitoring when a project is configured (``cloud_monitoring.project`` or
    ``gmp.project``), else PromQL."""
    project: str | None = setting(
        None,
        "Project read through Cloud Monitoring (default: --gmp-project).",
        option="cloud_monitoring_project",
    )
    location: str | None = setting(
        None,
        "The cluster's location, filtered on as resource.labels.location (default: the GKE"
        " metadata server's cluster-location).",
        option="cloud_monitoring_location",
    )
    """A zone or a region."""
    stackdriver_window: int = setting(
        120, "Seconds: Cloud Monitoring lookback for gauges; PromQL rate window for counters."
    )
    """In Cloud Monitoring, the newest point in it is served."""
    alignment_period: int = setting(
        60,
        "Seconds: ALIGN_RATE alignment period for counters in Cloud Monitoring.",
        option="cloud_monitoring_alignment_period",
    )


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """Where and how the API is served."""

    host: str = setting(
        "0.0.0.0",
        "Address to listen on (default 0.0.0.0; standalone 127.0.0.1).",
        flag_default=None,
    )
    port: int = setting(
        6443, "Port to listen on (default 6443; standalone 8080).", flag_default=None
    )
    standalone: bool = setting(
        False, "Plain HTTP on 127.0.0.1:8080, no Kubernetes, no auth (local use)."
    )
    """No Kubernetes, no auth: for local use and the demo."""
    tls_cert_file: str | None = setting(
        None, "Serving certificate (PEM), reloaded when it changes. Default: self-signed."
    )
    tls_private_key_file: str | None = setting(None, "Private key (PEM) of --tls-cert-file.")
    tls_reload_interval: float = 5.0
    """Seconds between checks of the serving certificate files for a rotation."""
    shutdown_timeout: float = setting(
        10.0, "Seconds in-flight requests may take to finish after SIGTERM."
    )
    max_requests_inflight: int = setting(
        400,
        "Requests served at once; more are answered 429 TooManyRequests with Retry-After: 1,"
        " as kube-apiserver's --max-requests-inflight (0: no limit; probes and /metrics are"
        " never refused).",
    )


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The Kubernetes API and delegated authentication (serving mode; unused standalone)."""

    kubeconfig: str | None = setting(
        None,
        "Kubeconfig for the Kubernetes API. Default: the in-cluster service account, else"
        " $KUBECONFIG or ~/.kube/config.",
    )
    context: str | None = setting(None, "Kubeconfig context to use. Default: its current one.")
    cache_ttl: float = setting(
        10.0,
        "Seconds TokenReview and SubjectAccessReview answers are reused.",
        option="auth_cache_ttl",
    )
    """Allowed and denied answers alike."""


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Freshness: the answer cache and discovery."""

    ttl: float = setting(
        5.0,
        "Seconds a backend answer is reused; keep it at or below the scrape interval.",
        option="cache_ttl",
    )
    keep_warm: float = setting(
        60.0,
        "Seconds: a query asked for periodically (an HPA every 15 s) within this window is"
        " prefetched just before its next request, so that request hits the cache; the"
        " backend load is unchanged (0: off).",
        option="cache_keep_warm",
    )
    max_sample_age: float | None = setting(
        None,
        "Seconds: older samples are not served (default: none; 240 with --gmp-project).",
    )
    """GMP keeps dead pods' series. ``None``: no limit, except with ``gmp.project``
    (:data:`GMP_DEFAULT_MAX_SAMPLE_AGE`)."""
    discovery_interval: float = setting(60.0, "Seconds between background discovery refreshes.")


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """The pod-scrape path: values read from the serving pods themselves (docs/scrape.md)."""

    pods: bool = setting(
        False,
        "Serve the rules the local evaluator supports from the pods, scraped when a request"
        " asks for them, instead of the backend (which keeps the other rules).",
        option="scrape_pods",
    )
    targets: str | None = setting(
        None,
        "YAML list of {namespace, pod, url, labels} to scrape (required with --scrape-pods).",
        option="scrape_targets",
    )
    min_interval: float = setting(
        1.0, "Seconds: no pod is scraped more often than this.", option="scrape_min_interval"
    )
    timeout: float = setting(
        1.0, "Seconds one scrape may take (at most 1).", option="scrape_timeout"
    )
    fallback: str = setting(
        "omit",
        "A pod that cannot be scraped: omit (left out, so the HPA's missing-pod rule applies) or"
        " backend (the whole query is answered by the backend).",
        option="scrape_fallback",
    )


@dataclass(frozen=True, slots=True)
class ResilienceSettings:
    """What happens when a backend fails."""

    stale_if_error: float = setting(
        0.0,
        "Seconds: on a backend failure, serve the last good answer if at most this old (0: off).",
    )
    """Stale answers are marked in /debug/query. 0: the request fails at once."""
    circuit_failures: int = setting(
        5, "Consecutive failed backend queries that open its circuit breaker (0: off)."
    )
    circuit_cooldown: float = setting(
        5.0, "Seconds an open circuit fails fast before one probe; doubles up to 60 s."
    )
    """Doubles per failed probe, up to ``circuit_max_cooldown``."""
    circuit_max_cooldown: float = 60.0
    """Seconds: the cap of the doubling cool-down (from the flags: at least the cool-down)."""


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = setting("info", "debug, info, warning or error.", option="log_level")
    format: str = setting(
        "auto", "json, text, or auto (JSON unless stderr is a terminal).", option="log_format"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Every process setting, by group: ``settings.cache.ttl``, ``settings.backend.prometheus_url``.

    Build it from flat option names with :meth:`from_options`, or from groups.
    """

    backend: BackendSettings = field(default_factory=BackendSettings, metadata=_panel("Backend"))
    gmp: GmpSettings = field(
        default_factory=GmpSettings, metadata=_panel("Google Managed Prometheus")
    )
    scope: ScopeSettings = field(default_factory=ScopeSettings, metadata=_panel("Scope"))
    rules: RulesSettings = field(default_factory=RulesSettings, metadata=_panel("Rules"))
    cloud_monitoring: CloudMonitoringSettings = field(
        default_factory=CloudMonitoringSettings, metadata=_panel("Stackdriver-style names")
    )
    serving: ServingSettings = field(
        default_factory=ServingSettings, metadata=_panel("Serving and TLS")
    )
    auth: AuthSettings = field(
        default_factory=AuthSettings, metadata=_panel("Kubernetes and authentication")
    )
    cache: CacheSettings = field(
        default_factory=CacheSettings, metadata=_panel("Cache and freshness")
    )
    resilience: ResilienceSettings = field(
        default_factory=ResilienceSettings, metadata=_panel("Failure policy")
    )
    scrape: ScrapeSettings = field(default_factory=ScrapeSettings, metadata=_panel("Pod scraping"))
    logging: LoggingSettings = field(default_factory=LoggingSettings, metadata=_panel("Logging"))

    def __post_init__(self) -> None:
        # GMP has no staleness: a deleted pod's series answers its last value for the whole
        # 5-minute lookback. Unless told otherwise, GMP mode refuses samples older than
        # GMP_DEFAULT_MAX_SAMPLE_AGE seconds (see docs/migration.md for why that value).
        if self.gmp.project and self.cache.max_sample_age is None:
            cache = replace(self.cache, max_sample_age=GMP_DEFAULT_MAX_SAMPLE_AGE)
            object.__setattr__(self, "cache", cache)

    @classmethod
    def from_options(cls, **values: Any) -> Settings:
        """Settings from flat option names (``prometheus_url=``, ``cache_ttl=``, ``gmp_project=``:
        the ``serve`` flags with ``_`` for ``-``, plus the settings without a flag); an option
        left out or ``None`` keeps its default.

        As ``serve`` does: an empty ``host`` or ``port`` is the default too, ``127.0.0.1:8080``
        when ``standalone``; ``circuit_max_cooldown`` is at least ``circuit_cooldown``.
        """
        given = {name: value for name, value in values.items() if value is not None}
        unknown = given.keys() - {option.name for option in options()}
        if unknown:
            raise TypeError(f"unknown settings option(s): {', '.join(sorted(unknown))}")
        serving = ServingSettings()
        loopback = given.get("standalone")
        given["host"] = given.get("host") or ("127.0.0.1" if loopback else serving.host)
        given["port"] = given.get("port") or (8080 if loopback else serving.port)
        if "circuit_cooldown" in given:
            least = ResilienceSettings().circuit_max_cooldown
            given.setdefault("circuit_max_cooldown", max(least, given["circuit_cooldown"]))
        for option in options():
            if option.parse is not None and option.name in given:
                given[option.name] = option.parse(given[option.name])
        groups = {
            group_name: group_cls(
                **{o.field: given[o.name] for o in _fields_of(group_name) if o.name in given}
            )
            for group_name, group_cls in _groups().items()
        }
        return cls(**groups)


@dataclass(frozen=True, slots=True)
class Option:
    """One setting as an option: ``Settings.from_options`` name, and its flag when it has one."""

    name: str
    """Flat option name: ``cache_ttl``."""
    group: str
    """The :class:`Settings` attribute of its group: ``cache``."""
    field: str
    """Its attribute in the group: ``ttl``."""
    default: Any
    """The field's default."""
    help: str
    """The flag's help; empty when the setting has no flag."""
    panel: str
    """The ``--help`` panel of its group."""
    flag_name: str
    """The flag without dashes: ``cache-ttl``."""
    flag_type: Any
    flag_default: Any
    env_separator: str | None
    parse: Callable[[Any], Any] | None
    """Turns the flag's value into the field's."""

    @property
    def has_flag(self) -> bool:
        return bool(self.help)

    @property
    def flag(self) -> str:
        return f"--{self.flag_name}"

    @property
    def env(self) -> str:
        """``LMA_<FLAG>``."""
        return "LMA_" + self.flag_name.upper().replace("-", "_")


def _groups() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings)}


def _fields_of(group_name: str) -> tuple[Option, ...]:
    return tuple(o for o in options() if o.group == group_name)


@functools.cache
def options() -> tuple[Option, ...]:
    """Every setting, in ``--help`` order (group by group); those with a flag have ``help``."""
    return tuple(_describe())


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _describe() -> Iterator[Option]:
    for group_field in fields(Settings):
        group_cls = _groups()[group_field.name]
        hints = typing.get_type_hints(group_cls)
        for f in fields(group_cls):
            meta = f.metadata
            name = meta.get("option") or f.name
            default = _default(f)
            flag_default = meta.get("flag_default", _SAME)
            flag_type = meta.get("flag_type") or hints[f.name]
            if flag_default is None and type(None) not in typing.get_args(flag_type):
                flag_type = flag_type | None
            yield Option(
                name=name,
                group=group_field.name,
                field=f.name,
                default=default,
                help=meta.get("help", _NO_FLAG),
                panel=group_field.metadata["panel"],
                flag_name=meta.get("flag") or name.replace("_", "-"),
                flag_type=flag_type,
                flag_default=default if flag_default is _SAME else flag_default,
                env_separator=meta.get("env_separator"),
                parse=meta.get("parse"),
            )
