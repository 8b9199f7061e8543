"""The ``llm-metrics-adapter`` command: ``serve``, ``check-config``, ``query`` and ``explain``.

The settings flags are generated from the settings description (:func:`adapter.settings.options`):
each has an environment variable ``LMA_<FLAG>`` (``--prometheus-url`` → ``LMA_PROMETHEUS_URL``;
the repeatable ``--prometheus-header`` takes one header per line), so manifests can use either.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import shutil
import textwrap
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import typer.core

from adapter import __version__
from adapter.domain.errors import AdapterError, ConfigError
from adapter.settings import Option, Settings, options

if TYPE_CHECKING:
    from adapter.app.context import AppContext, WatchedObjects
    from adapter.hpa.explain import HpaReader
    from adapter.rules.base import Rule
    from adapter.rules.loader import RuleSet

__all__ = ["app", "main"]

app = typer.Typer(
    name="llm-metrics-adapter",
    help="Kubernetes custom and external metrics API for LLM inference servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("adapter")

_T = TypeVar("_T")

_BACKEND_AND_RULES = (
    "prometheus_url",
    "prometheus_bearer_token_file",
    "prometheus_ca_file",
    "prometheus_insecure_skip_verify",
    "prometheus_headers",
    "prometheus_method",
    "config",
    "presets",
    "query_timeout",
)
"""The backend and rules flags every command that answers requests shares."""
_SCOPE = ("cluster", "all_clusters")
"""The scope flags: ``serve``, ``query``, ``explain`` and ``check-config`` take them all, and
the first three resolve them alike (:func:`adapter.serving.server.resolve_cluster`)."""
_GMP_AND_NAMES = (
    "gmp_project",
    "gmp_credentials_file",
    "google_endpoints",
    "stackdriver_names",
    "cloud_monitoring_project",
    "cloud_monitoring_location",
    "stackdriver_window",
    "cloud_monitoring_alignment_period",
)


_HELP_MAX_WIDTH = 100


def _reflow(text: str, width: int, indent: str = "") -> list[str]:
    """``text``'s paragraphs (blank-line separated) wrapped to ``width``; long words are split,
    never cut."""
    lines: list[str] = []
    for paragraph in textwrap.dedent(text).strip().split("\n\n"):
        if lines:
            lines.append("")
        lines += textwrap.wrap(
            " ".join(paragraph.split()),
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        ) or [indent]
    return lines


_TYPE_LABELS = {"str": "TEXT", "text": "TEXT", "int": "INTEGER", "float": "FLOAT"}


def _type_label(param: Any, ctx: Any) -> str:
    """The value's type in one word: ``TEXT``, ``FLOAT``, ``INTEGER``, ``PATH``."""
    name = getattr(getattr(param, "type", None), "name", None)
    if name is None and hasattr(param, "display_type_rich"):
        name = str(param.display_type_rich(ctx=ctx) or "").strip("<>")
    name = str(name or "text").lower()
    if name.startswith("list[") and name.endswith("]"):  # a repeatable flag: one value each
        name = name[5:-1]
    return _TYPE_LABELS.get(name, name.upper())


def _param_entry(param: Any, ctx: Any, width: int) -> list[str]:
    """A parameter's lines: its names and value type, then its help, environment variable
    and default, indented."""
    is_argument = param.param_type_name == "argument"
    is_flag = bool(getattr(param, "is_flag", False))
    if is_argument:
        head = str(param.name).upper()
    else:
        names = " / ".join(", ".join(opts) for opts in (param.opts, param.secondary_opts) if opts)
        head = names if is_flag else f"{names} {_type_label(param, ctx)}"
    notes: list[str] = []
    envvar = getattr(param, "envvar", None)
    if isinstance(envvar, str):
        notes.append(f"env: {envvar}")
    default = param.default
    if param.required:
        notes.append("required")
    elif is_flag:
        if default is True:
            notes.append("default: on")
    elif default not in (None, "", (), []) and not callable(default):
        notes.append(f"default: {default}")
    text = getattr(param, "help", None) or ""
    if notes:
        text += f" [{'; '.join(notes)}]"
    return [*_reflow(head, width), *_reflow(text, width, indent="    ")]


def _panel(title: str, lines: list[str], width: int) -> list[str]:
    """``lines`` in a box of ``width`` columns titled ``title``."""
    inner = width - 4
    top = f"╭─ {title} " + "─" * max(0, width - len(title) - 5) + "╮"
    body = [f"│ {line.ljust(inner)} │" for line in lines]
    return [top, *body, "╰" + "─" * (width - 2) + "╯"]


def render_command_help(command: Any, ctx: Any, width: int) -> str:
    """The ``--help`` of ``command`` (a click command) at ``width`` columns: usage,
    description, then its parameters in titled panels (arguments, the command's own options,
    then one panel per settings group). Every flag name is shown whole, whatever the width:
    a line too long is wrapped, never cut."""
    width = max(width, 40)
    inner = width - 4
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    arguments = [str(p.name).upper() for p in params if p.param_type_name == "argument"]
    usage = " ".join([ctx.command_path, "[OPTIONS]", *arguments])
    out = ["", *_reflow(f"Usage: {usage}", width - 1, indent=" "), ""]
    if command.help:
        out += [*_reflow(command.help, width - 1, indent=" "), ""]
    panels: dict[str, list[str]] = {}
    for param in params:
        default_panel = "Arguments" if param.param_type_name == "argument" else "Options"
        title = getattr(param, "rich_help_panel", None) or default_panel
        panels.setdefault(title, []).extend(_param_entry(param, ctx, inner))
    for title in sorted(panels, key=lambda t: (t != "Arguments", t != "Options")):
        out += _panel(title, panels[title], width)
    return "\n".join(out) + "\n"


class _HelpCommand(typer.core.TyperCommand):
    """A command whose ``--help`` is :func:`render_command_help`: readable at 80 columns
    (typer's table shrinks its columns until flag names are cut)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        formatter.write(render_command_help(self, ctx, min(columns, _HELP_MAX_WIDTH)))


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _split_env(separator: str) -> Callable[..., Any]:
    """A flag callback: a repeatable flag's environment variable holds its values separated by
    ``separator`` (click would split it at whitespace, and a header value has spaces)."""

    def split(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        source = ctx.get_parameter_source(param.name or "")
        # By name: typer may bring its own copy of click's ParameterSource.
        if source is None or source.name != "ENVIRONMENT" or not isinstance(param.envvar, str):
            return value
        return [item for item in os.environ[param.envvar].split(separator) if item.strip()]

    return split


def _parameter(option: Option, default: Any) -> inspect.Parameter:
    """The typer parameter of ``option``'s flag: its name, environment variable, help, panel."""
    # A flag that is off by default has no use for its --no- twin: naming only the flag keeps
    # the two-column name table of --help narrow enough for 80 columns.
    declared = (f"--{option.flag_name}",) if option.flag_type is bool and default is False else ()
    info = typer.Option(
        *declared,
        envvar=option.env,
        # render_command_help lists the variable under the flag (typer's own table is not used).
        show_envvar=False,
        help=option.help,
        rich_help_panel=option.panel,
        callback=_split_env(option.env_separator) if option.env_separator else None,
    )
    return inspect.Parameter(
        option.flag_name.replace("-", "_"),
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[option.flag_type, info],
    )


def _with_settings(
    *names: str, defaults: Mapping[str, Any] | None = None, **fixed: Any
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the flags of the settings ``names`` (every flag when none are named).

    The command's first parameter receives ``Settings.from_options`` of those flags and of
    ``fixed``; its other parameters stay its own. ``defaults``: flag defaults of this command.
    """
    flagged = [o for o in options() if o.has_flag]
    unknown = set(names) - {o.name for o in flagged}
    if unknown:
        raise ValueError(f"no such flag: {', '.join(sorted(unknown))}")
    chosen = {o.flag_name.replace("-", "_"): o for o in flagged if not names or o.name in names}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]

        def run(**values: Any) -> None:
            flags = {o.name: values.pop(param) for param, o in chosen.items()}
            try:
                settings = Settings.from_options(**flags, **fixed)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
            command(settings, **values)

        generated = [
            _parameter(o, (defaults or {}).get(o.name, o.flag_default)) for o in chosen.values()
        ]
        run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated
        )
        run.__name__, run.__doc__ = command.__name__, command.__doc__
        return run

    return decorate


def _load(settings: Settings) -> RuleSet:
    from adapter.rules.loader import load_configured_rules

    return load_configured_rules(settings)


def _context(
    settings: Settings,
    *,
    objects: WatchedObjects | None = None,
    hpa_reader: HpaReader | None = None,
) -> AppContext:
    """The context ``query`` and ``explain`` answer from; closing it closes every backend."""
    from adapter.app.context import build_context
    from adapter.backends.factory import build_backend

    return build_context(
        settings,
        backend=build_backend(settings),
        rules=_load(settings),
        objects=objects,
        hpa_reader=hpa_reader,
    )


@app.command(cls=_HelpCommand)
@_with_settings()
def serve(settings: Settings) -> None:
    """Serve the custom and external metrics APIs.

    In a cluster: HTTPS with delegated authentication (the aggregator's front-proxy certificate,
    client certificates, bearer tokens) and authorization (SubjectAccessReview). With
    --standalone: plain HTTP on loopback, no Kubernetes, no authentication.

    Every flag also reads an environment variable: LMA_ and the flag's name in capitals
    (--prometheus-url: LMA_PROMETHEUS_URL; --prometheus-header: one header per line).
    """
    import uvloop

    from adapter.backends.factory import build_backend
    from adapter.observability.logging import configure_logging
    from adapter.serving.server import run_adapter

    try:
        configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    except ValueError as exc:
        _fail(f"error: {exc}", 2)
    serving = settings.serving
    if bool(serving.tls_cert_file) != bool(serving.tls_private_key_file):
        _fail("error: give both --tls-cert-file and --tls-private-key-file", 2)
    try:
        rules = _load(settings)
        for warning in rules.warnings:
            log.warning("%s", warning)
        log.info(
            "serving %d rules (%s) from %s on %s://%s:%d",
            len(rules.rules),
            rules.format,
            settings.backend.prometheus_url.split("?")[0],
            "http" if serving.standalone else "https",
            serving.host,
            serving.port,
        )
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_adapter(settings, rules=rules, backend=build_backend(settings)))
    except AdapterError as exc:
        _fail(f"error: {exc.message}", 2)


def request_time_problems(rule: Rule, settings: Settings) -> list[str]:
    """What will fail when ``rule`` is asked, given the cluster and backend ``settings`` name:
    a query that pins another cluster (a 403 for every request), a pinned namespace (a 403
    from every other namespace), and metric names GMP cannot match (never served)."""
    from adapter.core.registry import gmp_name_problem

    texts = [
        text
        for text in (getattr(rule, "query", None), getattr(rule, "metrics_query", None))
        if isinstance(text, str)
    ]
    problems: list[str] = []
    scope = settings.scope
    for text in texts:
        pinned = set(re.findall(rf'\b{re.escape(scope.cluster_label)}\s*=\s*"([^"]*)"', text))
        if scope.cluster and pinned - {scope.cluster}:
            problems.append(
                f"pins {scope.cluster_label}={sorted(pinned)[0]!r}, but this adapter serves"
                f" cluster {scope.cluster!r}: every request will be 403"
            )
        if rule.namespace_label:
            namespaces = re.findall(rf'\b{re.escape(rule.namespace_label)}\s*=\s*"([^"]*)"', text)
            if namespaces:
                problems.append(
                    f"pins {rule.namespace_label}={namespaces[0]!r}: requests from any other"
                    " namespace will be 403"
                )
    if settings.gmp.project:
        gmp = gmp_name_problem(rule)
        if gmp is not None:
            problems.append(f"not served under --gmp-project: {gmp}")
    return problems


def scrape_source(rule: Rule) -> str:
    """Where ``rule``'s values come from with ``--scrape-pods``, and why."""
    from adapter.core.sources import scrape_source as source

    found = source(rule, "backend")
    if found["from"] == "pods":
        return "the pods"
    if found["from"] == "per request":
        return "the pods when the rendered query is in the local evaluator's subset (per metric)"
    return f"backend ({found['why']})"


@app.command("check-config", cls=_HelpCommand)
@_with_settings("presets", *_SCOPE, "gmp_project", defaults={"presets": False})
def check_config(
    settings: Settings, file: Annotated[Path, typer.Argument(help="Rules file to validate.")]
) -> None:
    """Validate a rules file; print each rule, the query it makes and what gets injected.

    With --cluster and --gmp-project, also what will fail at request time: rules pinned to
    another cluster or to one namespace, metric names GMP cannot match.
    """
    from adapter.rules.loader import load_rules

    try:
        rules = load_rules(file, presets=settings.rules.presets)
    except AdapterError as exc:
        _fail(f"error: {exc.message}", 1)
    typer.echo(f"{file}: {rules.format} format, {len(rules.rules)} rules")
    scope = settings.scope
    typer.echo(
        "scope: every cluster (--all-clusters)"
        if scope.all_clusters
        else f"scope: {scope.cluster_label}={scope.cluster!r}"
        if scope.cluster
        else "scope: no --cluster given (serve reads it from the GKE metadata server)"
    )
    problems = 0
    for rule in rules.rules:
        typer.echo("")
        typer.echo(f"- {rule.id} ({rule.kind}, {rule.source})")
        for line in rule.describe().splitlines():
            typer.echo(f"    {line}")
        typer.echo(f"    with --scrape-pods: {scrape_source(rule)}")
        for problem in request_time_problems(rule, settings):
            problems += 1
            typer.echo(f"    will fail: {problem}")
    for warning in rules.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("")
    notes = [f"{len(rules.warnings)} warning(s)"] if rules.warnings else []
    notes += [f"{problems} request-time problem(s)"] if problems else []
    typer.echo("ok" if not notes else f"ok, with {' and '.join(notes)}")


async def answer_path(settings: Settings, path: str, *, explain: bool) -> dict[str, Any]:
    """What ``query`` prints: the API's answer to ``path``, with the backend side if ``explain``.

    Scoped as ``serve`` is: ``--cluster``, else the GKE metadata server's cluster, else
    :class:`ConfigError` unless ``--all-clusters`` says to read every cluster."""
    from adapter.api.debug import trace_document
    from adapter.core.provider import Trace
    from adapter.core.request import parse_path_string
    from adapter.serving.server import resolve_cluster

    settings = await resolve_cluster(settings)
    trace = Trace()
    async with _context(settings) as ctx:
        await ctx.registry.refresh()
        answer = await ctx.provider.answer(parse_path_string(path), trace=trace)
    if not explain:
        return answer.body
    return {"answer": answer.body, "explain": trace_document(trace, now=time.time(), cache_ttl=0)}


@app.command(cls=_HelpCommand)
@_with_settings(*_BACKEND_AND_RULES, *_SCOPE, *_GMP_AND_NAMES, standalone=True)
def query(
    settings: Settings,
    path: Annotated[
        str,
        typer.Argument(
            help="Metrics API path, e.g. /apis/external.metrics.k8s.io/v1beta1/namespaces/default/jetstream_prefill_backlog_size"
        ),
    ],
    explain: Annotated[
        bool, typer.Option(help="Also print the backend query and raw answer.")
    ] = False,
) -> None:
    """Answer one metrics API path from the command line, without a server.

    Scoped to --cluster, else to the cluster the GKE metadata server names; elsewhere give
    --cluster (or --all-clusters to read every cluster's series).
    """
    result = _run_or_fail(answer_path(settings, path, explain=explain))
    typer.echo(json.dumps(result, indent=2))


def _run_or_fail(work: Coroutine[Any, Any, _T]) -> _T:
    """``work``'s result; an adapter error is one line on stderr and exit code 1."""
    try:
        return asyncio.run(work)
    except ConfigError as exc:
        _fail(f"error: {exc.message}", 1)
    except AdapterError as exc:
        _fail(f"error ({exc.code} {exc.reason}): {exc.message}", 1)


async def explain_target(
    settings: Settings,
    namespace: str,
    name: str,
    *,
    tolerance: float,
    downscale_stabilization: float,
) -> dict[str, Any]:
    """What ``explain`` prints: the HPA's decision from this adapter's values, as a document.

    Scoped as ``serve`` is (see :func:`answer_path`); a backend that does not answer is an
    error (a :class:`BackendError`), not a document of failed readings."""
    from adapter.hpa.explain import explain_hpa
    from adapter.kube import KubeClient, ObjectCache
    from adapter.serving.server import resolve_cluster

    settings = await resolve_cluster(settings)
    timeout = settings.backend.query_timeout
    kube = KubeClient.connect(
        settings.auth.kubeconfig, context=settings.auth.context, timeout=timeout
    )
    try:
        await kube.check_reachable()
    except BaseException:
        kube.close()
        raise
    objects = ObjectCache(kube)
    objects.start()
    ctx = _context(settings, objects=objects, hpa_reader=kube)
    ctx.on_close(kube.close)
    ctx.on_close(objects.stop)
    async with ctx:
        await ctx.backend.ping(timeout=timeout)
        await objects.wait_ready(timeout)
        await ctx.registry.refresh()
        return await explain_hpa(
            ctx.provider,
            kube,
            namespace,
            name,
            default_tolerance=tolerance,
            downscale_stabilization_s=downscale_stabilization,
        )


@app.command(cls=_HelpCommand)
@_with_settings("kubeconfig", "context", *_BACKEND_AND_RULES, *_SCOPE, *_GMP_AND_NAMES)
def explain(
    settings: Settings,
    target: Annotated[str, typer.Argument(help="The HPA as NAMESPACE/NAME.")],
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
    """Explain what an HPA decides from this adapter's values, metric by metric.

    Scoped to --cluster, else to the cluster the GKE metadata server names; elsewhere give
    --cluster (or --all-clusters to read every cluster's series).
    """
    from adapter.hpa.explain import render_explanation

    namespace, sep, name = target.partition("/")
    if not sep or not namespace or not name:
        _fail("error: give the HPA as NAMESPACE/NAME", 2)
    # An unreachable apiserver is one line below, not a retry warning per attempt.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    doc = _run_or_fail(
        explain_target(
            settings,
            namespace,
            name,
            tolerance=tolerance,
            downscale_stabilization=downscale_stabilization,
        )
    )
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        render_explanation(doc)


@app.command(cls=_HelpCommand)
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="llm-metrics-adapter")


if __name__ == "__main__":
    main()
