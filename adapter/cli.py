"""The ``llm-metrics-adapter`` command: ``serve``, ``check-config``, ``query`` and ``explain``.

Every ``serve`` flag has an environment variable ``LMA_<FLAG>`` (``--prometheus-url`` →
``LMA_PROMETHEUS_URL``), so manifests can use either.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from adapter import __version__
from adapter.domain.errors import AdapterError
from adapter.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="llm-metrics-adapter",
    help="Kubernetes custom and external metrics API for LLM inference servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("adapter")


def _env(name: str) -> str:
    return f"LMA_{name.upper().replace('-', '_')}"


def _parse_headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected 'Name: value', got {name.strip()!r}…")
        headers[name.strip()] = value.strip()
    return headers


PrometheusUrl = Annotated[
    str,
    typer.Option(envvar=_env("prometheus-url"), help="Prometheus-compatible query API base URL."),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option(envvar=_env("config"), help="Rules file (native or prometheus-adapter format)."),
]
PresetsOpt = Annotated[
    bool, typer.Option(envvar=_env("presets"), help="Serve the built-in JetStream and TPU presets.")
]
ClusterOpt = Annotated[
    str | None,
    typer.Option(envvar=_env("cluster"), help='Scope every query to cluster="<name>".'),
]
GmpProjectOpt = Annotated[
    str | None,
    typer.Option(
        envvar=_env("gmp-project"),
        help="Query this project's Google Managed Prometheus directly with Google credentials "
        "(Workload Identity / Application Default Credentials); replaces --prometheus-url.",
    ),
]
GmpCredentialsOpt = Annotated[
    str | None,
    typer.Option(
        envvar=_env("gmp-credentials-file"),
        help="Google credentials file for --gmp-project. Default: Application Default Credentials.",
    ),
]
TimeoutOpt = Annotated[
    float, typer.Option(envvar=_env("query-timeout"), help="Seconds per backend call.")
]


StackdriverNamesOpt = Annotated[
    str,
    typer.Option(
        envvar=_env("stackdriver-names"),
        help="Stackdriver-style names (prometheus.googleapis.com|<metric>|gauge): "
        "cloud-monitoring, promql, off, or auto (Cloud Monitoring when a project is set).",
    ),
]
CloudMonitoringProjectOpt = Annotated[
    str | None,
    typer.Option(
        envvar=_env("cloud-monitoring-project"),
        help="Project read through Cloud Monitoring (default: --gmp-project).",
    ),
]
CloudMonitoringLocationOpt = Annotated[
    str | None,
    typer.Option(
        envvar=_env("cloud-monitoring-location"),
        help="The cluster's location, filtered on as resource.labels.location.",
    ),
]
StackdriverWindowOpt = Annotated[
    int,
    typer.Option(
        envvar=_env("stackdriver-window"),
        help="Seconds: Cloud Monitoring lookback for gauges; PromQL rate window for counters.",
    ),
]
AlignmentPeriodOpt = Annotated[
    int,
    typer.Option(
        envvar=_env("cloud-monitoring-alignment-period"),
        help="Seconds: ALIGN_RATE alignment period for counters in Cloud Monitoring.",
    ),
]


def _settings(**kwargs: Any) -> Settings:
    return Settings(**{k: v for k, v in kwargs.items() if v is not None})


def _load(settings: Settings) -> Any:
    from adapter.rules.loader import load_configured_rules

    return load_configured_rules(settings)


@app.command()
def serve(
    prometheus_url: PrometheusUrl = "http://127.0.0.1:9090",
    prometheus_bearer_token_file: Annotated[
        str | None,
        typer.Option(
            envvar=_env("prometheus-bearer-token-file"),
            help="File holding a bearer token for the backend; re-read when it changes.",
        ),
    ] = None,
    prometheus_ca_file: Annotated[
        str | None,
        typer.Option(
            envvar=_env("prometheus-ca-file"), help="CA bundle (PEM) to verify the backend."
        ),
    ] = None,
    prometheus_insecure_skip_verify: Annotated[
        bool,
        typer.Option(
            envvar=_env("prometheus-insecure-skip-verify"),
            help="Do not verify the backend's TLS certificate (testing only).",
        ),
    ] = False,
    prometheus_header: Annotated[
        list[str] | None,
        typer.Option(help="Extra header 'Name: value' (repeatable). Never logged."),
    ] = None,
    prometheus_method: Annotated[
        str,
        typer.Option(envvar=_env("prometheus-method"), help="GET or POST for /api/v1/query."),
    ] = "GET",
    gmp_project: GmpProjectOpt = None,
    gmp_credentials_file: GmpCredentialsOpt = None,
    config: ConfigOpt = None,
    presets: PresetsOpt = True,
    cluster: ClusterOpt = None,
    host: Annotated[
        str | None,
        typer.Option(
            envvar=_env("host"),
            help="Address to listen on (default 0.0.0.0; standalone 127.0.0.1).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            envvar=_env("port"), help="Port to listen on (default 6443; standalone 8080)."
        ),
    ] = None,
    standalone: Annotated[
        bool,
        typer.Option(
            envvar=_env("standalone"),
            help="Plain HTTP on 127.0.0.1:8080, no Kubernetes, no auth (local use).",
        ),
    ] = False,
    tls_cert_file: Annotated[
        str | None,
        typer.Option(
            envvar=_env("tls-cert-file"),
            help="Serving certificate (PEM), reloaded when it changes. Default: self-signed.",
        ),
    ] = None,
    tls_private_key_file: Annotated[
        str | None,
        typer.Option(
            envvar=_env("tls-private-key-file"), help="Private key (PEM) of --tls-cert-file."
        ),
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            envvar=_env("kubeconfig"),
            help="Kubeconfig for the Kubernetes API. Default: the in-cluster service account.",
        ),
    ] = None,
    auth_cache_ttl: Annotated[
        float,
        typer.Option(
            envvar=_env("auth-cache-ttl"),
            help="Seconds TokenReview and SubjectAccessReview answers are reused.",
        ),
    ] = 10.0,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            envvar=_env("shutdown-timeout"),
            help="Seconds in-flight requests may take to finish after SIGTERM.",
        ),
    ] = 10.0,
    cache_ttl: Annotated[
        float,
        typer.Option(
            envvar=_env("cache-ttl"),
            help="Seconds a backend answer is reused; keep it at or below the scrape interval.",
        ),
    ] = 5.0,
    cache_keep_warm: Annotated[
        float,
        typer.Option(
            envvar=_env("cache-keep-warm"),
            help="Seconds: a query asked for periodically (an HPA every 15 s) within this window is"
            " prefetched just before its next request, so that request hits the cache; the"
            " backend load is unchanged (0: off).",
        ),
    ] = 60.0,
    max_sample_age: Annotated[
        float | None,
        typer.Option(
            envvar=_env("max-sample-age"),
            help="Seconds: older samples are not served (default: none; 240 with --gmp-project).",
        ),
    ] = None,
    discovery_interval: Annotated[
        float,
        typer.Option(
            envvar=_env("discovery-interval"),
            help="Seconds between background discovery refreshes.",
        ),
    ] = 60.0,
    query_timeout: TimeoutOpt = 10.0,
    log_level: Annotated[
        str,
        typer.Option(envvar=_env("log-level"), help="debug, info, warning or error."),
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            envvar=_env("log-format"),
            help="json, text, or auto (JSON unless stderr is a terminal).",
        ),
    ] = "auto",
    stale_if_error: Annotated[
        float,
        typer.Option(
            envvar=_env("stale-if-error"),
            help="Seconds: on a backend failure, serve the last good answer if at most this old"
            " (0: off).",
        ),
    ] = 0.0,
    circuit_failures: Annotated[
        int,
        typer.Option(
            envvar=_env("circuit-failures"),
            help="Consecutive failed backend queries that open its circuit breaker (0: off).",
        ),
    ] = 5,
    circuit_cooldown: Annotated[
        float,
        typer.Option(
            envvar=_env("circuit-cooldown"),
            help="Seconds an open circuit fails fast before one probe; doubles up to 60 s.",
        ),
    ] = 5.0,
    rules_reload_interval: Annotated[
        float,
        typer.Option(
            envvar=_env("rules-reload-interval"),
            help="Seconds between checks of --config for a change (0: no reload).",
        ),
    ] = 2.0,
    stackdriver_names: StackdriverNamesOpt = "auto",
    cloud_monitoring_project: CloudMonitoringProjectOpt = None,
    cloud_monitoring_location: CloudMonitoringLocationOpt = None,
    stackdriver_window: StackdriverWindowOpt = 120,
    cloud_monitoring_alignment_period: AlignmentPeriodOpt = 60,
) -> None:
    """Serve the custom and external metrics APIs.

    In a cluster: HTTPS with delegated authentication (the aggregator's front-proxy certificate,
    client certificates, bearer tokens) and authorization (SubjectAccessReview). With
    --standalone: plain HTTP on loopback, no Kubernetes, no authentication.
    """
    import uvloop

    from adapter.backends.factory import build_backend
    from adapter.observability.logging import configure_logging
    from adapter.serving.server import run_adapter

    try:
        configure_logging(level=log_level, fmt=log_format)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    settings = _settings(
        prometheus_url=prometheus_url,
        prometheus_bearer_token_file=prometheus_bearer_token_file,
        prometheus_ca_file=prometheus_ca_file,
        prometheus_insecure_skip_verify=prometheus_insecure_skip_verify,
        prometheus_headers=_parse_headers(prometheus_header or []),
        prometheus_method=prometheus_method,
        gmp_project=gmp_project,
        gmp_credentials_file=gmp_credentials_file,
        config=config,
        presets=presets,
        cluster=cluster,
        host=host or ("127.0.0.1" if standalone else "0.0.0.0"),
        port=port or (8080 if standalone else 6443),
        standalone=standalone,
        tls_cert_file=tls_cert_file,
        tls_private_key_file=tls_private_key_file,
        kubeconfig=kubeconfig,
        auth_cache_ttl=auth_cache_ttl,
        shutdown_timeout=shutdown_timeout,
        cache_ttl=cache_ttl,
        cache_keep_warm=cache_keep_warm,
        max_sample_age=max_sample_age,
        discovery_interval=discovery_interval,
        query_timeout=query_timeout,
        log_level=log_level,
        log_format=log_format,
        stale_if_error=stale_if_error,
        circuit_failures=circuit_failures,
        circuit_cooldown=circuit_cooldown,
        circuit_max_cooldown=max(60.0, circuit_cooldown),
        rules_reload_interval=rules_reload_interval,
        stackdriver_names=stackdriver_names,
        cloud_monitoring_project=cloud_monitoring_project,
        cloud_monitoring_location=cloud_monitoring_location,
        stackdriver_window=stackdriver_window,
        cloud_monitoring_alignment_period=cloud_monitoring_alignment_period,
    )
    if bool(settings.tls_cert_file) != bool(settings.tls_private_key_file):
        typer.echo("error: give both --tls-cert-file and --tls-private-key-file", err=True)
        raise typer.Exit(2)
    try:
        rules = _load(settings)
    except AdapterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    for warning in rules.warnings:
        log.warning("%s", warning)
    log.info(
        "serving %d rules (%s) from %s on %s://%s:%d",
        len(rules.rules),
        rules.format,
        settings.prometheus_url.split("?")[0],
        "http" if settings.standalone else "https",
        settings.host,
        settings.port,
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_adapter(settings, rules=rules, backend=build_backend(settings)))
    except AdapterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="Rules file to validate.")],
    presets: PresetsOpt = False,
) -> None:
    """Validate a rules file; print each rule, the query it makes and what gets injected."""
    from adapter.rules.loader import load_rules

    try:
        rules = load_rules(file, presets=presets)
    except AdapterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{file}: {rules.format} format, {len(rules.rules)} rules")
    for rule in rules.rules:
        typer.echo("")
        typer.echo(f"- {rule.id} ({rule.kind}, {rule.source})")
        for line in rule.describe().splitlines():
            typer.echo(f"    {line}")
    for warning in rules.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("")
    typer.echo("ok" if not rules.warnings else f"ok, with {len(rules.warnings)} warning(s)")


@app.command()
def query(
    path: Annotated[
        str,
        typer.Argument(
            help="Metrics API path, e.g. /apis/external.metrics.k8s.io/v1beta1/namespaces/default/jetstream_prefill_backlog_size"
        ),
    ],
    prometheus_url: PrometheusUrl = "http://127.0.0.1:9090",
    config: ConfigOpt = None,
    presets: PresetsOpt = True,
    cluster: ClusterOpt = None,
    query_timeout: TimeoutOpt = 10.0,
    gmp_project: GmpProjectOpt = None,
    gmp_credentials_file: GmpCredentialsOpt = None,
    explain: Annotated[
        bool, typer.Option(help="Also print the backend query and raw answer.")
    ] = False,
    stackdriver_names: StackdriverNamesOpt = "auto",
    cloud_monitoring_project: CloudMonitoringProjectOpt = None,
    cloud_monitoring_location: CloudMonitoringLocationOpt = None,
    stackdriver_window: StackdriverWindowOpt = 120,
    cloud_monitoring_alignment_period: AlignmentPeriodOpt = 60,
) -> None:
    """Answer one metrics API path from the command line, without a server."""
    from adapter.api.debug import trace_document
    from adapter.backends.factory import build_backend
    from adapter.core.provider import Trace
    from adapter.core.request import parse_path_string
    from adapter.serving.asgi import build_context

    settings = _settings(
        prometheus_url=prometheus_url,
        config=config,
        presets=presets,
        cluster=cluster,
        query_timeout=query_timeout,
        gmp_project=gmp_project,
        gmp_credentials_file=gmp_credentials_file,
        standalone=True,
        stackdriver_names=stackdriver_names,
        cloud_monitoring_project=cloud_monitoring_project,
        cloud_monitoring_location=cloud_monitoring_location,
        stackdriver_window=stackdriver_window,
        cloud_monitoring_alignment_period=cloud_monitoring_alignment_period,
    )

    async def run() -> dict[str, Any]:
        ctx = build_context(settings, backend=build_backend(settings), rules=_load(settings))
        trace = Trace()
        try:
            await ctx.registry.refresh()
            answer = await ctx.provider.answer(parse_path_string(path), trace=trace)
        finally:
            for backend in {id(b): b for b in ctx.provider.backends.values()}.values():
                await backend.aclose()
        if explain:
            import time

            return {
                "answer": answer.body,
                "explain": trace_document(trace, now=time.time(), cache_ttl=0),
            }
        return answer.body

    try:
        result = asyncio.run(run())
    except AdapterError as exc:
        typer.echo(f"error ({exc.code} {exc.reason}): {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


@app.command()
def explain(
    target: Annotated[str, typer.Argument(help="The HPA as NAMESPACE/NAME.")],
    kubeconfig: Annotated[
        str | None,
        typer.Option(envvar=_env("kubeconfig"), help="Kubeconfig. Default: in-cluster."),
    ] = None,
    prometheus_url: PrometheusUrl = "http://127.0.0.1:9090",
    config: ConfigOpt = None,
    presets: PresetsOpt = True,
    cluster: ClusterOpt = None,
    query_timeout: TimeoutOpt = 10.0,
    tolerance: Annotated[
        float, typer.Option(help="The controller's --horizontal-pod-autoscaler-tolerance.")
    ] = 0.1,
    downscale_stabilization: Annotated[
        float,
        typer.Option(
            help="Seconds: the controller's --horizontal-pod-autoscaler-downscale-stabilization."
        ),
    ] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
) -> None:
    """Explain what an HPA decides from this adapter's values, metric by metric."""
    from adapter.backends.factory import build_backend
    from adapter.hpa.explain import explain_hpa, render_explanation
    from adapter.kube import KubeClient, ObjectCache
    from adapter.serving.asgi import build_context

    namespace, sep, name = target.partition("/")
    if not sep or not namespace or not name:
        typer.echo("error: give the HPA as NAMESPACE/NAME", err=True)
        raise typer.Exit(2)
    settings = _settings(
        prometheus_url=prometheus_url,
        config=config,
        presets=presets,
        cluster=cluster,
        query_timeout=query_timeout,
        kubeconfig=kubeconfig,
    )

    async def run() -> dict[str, Any]:
        kube = KubeClient.connect(kubeconfig, timeout=query_timeout)
        objects = ObjectCache(kube)
        objects.start()
        ctx = build_context(
            settings, backend=build_backend(settings), rules=_load(settings), objects=objects
        )
        try:
            await objects.wait_ready(query_timeout)
            await ctx.registry.refresh()
            return await explain_hpa(
                ctx.provider,
                kube,
                namespace,
                name,
                default_tolerance=tolerance,
                downscale_stabilization_s=downscale_stabilization,
            )
        finally:
            objects.stop()
            await ctx.backend.aclose()
            kube.close()

    try:
        doc = asyncio.run(run())
    except AdapterError as exc:
        typer.echo(f"error ({exc.code} {exc.reason}): {exc.message}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        render_explanation(doc)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="llm-metrics-adapter")


if __name__ == "__main__":
    main()
