"""Load a rules file: native or prometheus-adapter format, detected from its top-level keys.

- a top-level ``metrics`` list → the native format (:mod:`adapter.rules.native`);
- ``rules`` / ``externalRules`` / ``resourceRules`` → prometheus-adapter's config file; ``rules``
  given as a mapping (``default``, ``custom``, ``external``…) is the prometheus-adapter Helm
  chart's values form, which the GKE guide uses;
- anything else → :class:`RuleError` naming the file.

Rules are ordered by precedence: the file's rules first, then the presets. When two rules serve
the same (name, kind, resource), the first one wins; a preset shadowed by a rule whose name is
known at load is dropped here, with a warning.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, Literal

import yaml

from adapter.domain.errors import ConfigError, RuleError
from adapter.domain.models import GroupResource
from adapter.rules.base import MetricKind, Rule
from adapter.rules.native import NativeRule, compile_native
from adapter.rules.prometheus_adapter import PrometheusAdapterRule, compile_discovery_rule
from adapter.rules.stackdriver import StackdriverOptions, options_from_settings, stackdriver_rules
from adapter.settings import Settings

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "RuleSet",
    "load_configured_rules",
    "load_rules",
    "load_rules_text",
    "preset_rules",
]

MAX_FILE_BYTES = 1024 * 1024
"""Largest rules file accepted, in bytes."""
MAX_DEPTH = 32
"""Deepest YAML nesting accepted (the formats need 6)."""
_MAX_NODES = 200_000
_PA_KEYS = ("rules", "externalRules", "resourceRules")
_HELM_KEYS = frozenset({"default", "custom", "external", "existing", "resource"})

RuleFormat = Literal["none", "native", "prometheus-adapter"]


@dataclass(frozen=True)
class RuleSet:
    """The compiled rules, in precedence order, and what loading them had to say.

    ``warnings``: each names the rule id it is about.
    """

    rules: tuple[Rule, ...]
    file: str | None
    format: RuleFormat
    warnings: tuple[str, ...]


MetricKey = tuple[str, MetricKind, GroupResource | None]


def _check_shape(doc: object, *, file: str) -> None:
    # Iterative, with a node budget: YAML aliases can make a small file a huge graph.
    stack: list[tuple[object, int]] = [(doc, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > _MAX_NODES:
            raise RuleError(f"more than {_MAX_NODES} YAML nodes (aliases?)", file=file)
        if depth > MAX_DEPTH:
            raise RuleError(f"YAML nested deeper than {MAX_DEPTH} levels", file=file)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            for key in node:
                if not isinstance(key, str):
                    raise RuleError(f"mapping key {key!r} is not a string", file=file)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _parse_yaml(text: str, *, file: str) -> Any:
    if len(text.encode("utf-8", errors="replace")) > MAX_FILE_BYTES:
        raise RuleError(f"larger than {MAX_FILE_BYTES} bytes", file=file)
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RuleError(f"invalid YAML{where}: {exc.problem or exc}", file=file) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:
        raise RuleError(f"YAML nested deeper than {MAX_DEPTH} levels", file=file) from None
    _check_shape(doc, file=file)
    return doc


@functools.cache
def preset_rules() -> tuple[NativeRule, ...]:
    """The built-in rules (``adapter/rules/presets.yaml``), compiled once."""
    text = importlib_resources.files("adapter.rules").joinpath("presets.yaml").read_text("utf-8")
    doc = _parse_yaml(text, file="presets.yaml")
    out: list[NativeRule] = []
    for i, raw in enumerate(doc["metrics"]):
        rule_id = f"preset:{raw['type']}/{raw['name']}"
        out.append(
            compile_native(raw, index=i, file="presets.yaml", rule_id=rule_id, source="preset")
        )
    return tuple(out)


def _pods_queries() -> dict[str, tuple[str, tuple[str, ...]]]:
    # Stackdriver-style pods names reuse the pods preset of the same metric (PromQL mode), so
    # prometheus.googleapis.com|jetstream_slots_used_percentage|gauge is the mean over idx too.
    return {
        r.name: (r.query, r.object_labels)
        for r in preset_rules()
        if r.kind == "custom" and r.resource == GroupResource("pods")
    }


def _key(rule: NativeRule) -> MetricKey:
    return (rule.name, rule.kind, rule.resource)


def _load_native(
    doc: dict[str, Any], *, file: str, base: str
) -> tuple[list[Rule], list[str], set[MetricKey]]:
    extra = sorted(set(doc) - {"metrics"})
    if extra:
        raise RuleError(
            f"unknown top-level keys {extra}: a native rules file has only metrics", file=file
        )
    items = doc["metrics"]
    if not isinstance(items, list):
        raise RuleError("metrics must be a list", file=file, field="metrics")
    rules: list[Rule] = []
    warnings: list[str] = []
    seen: dict[MetricKey, str] = {}
    for i, raw in enumerate(items):
        rule = compile_native(
            raw, index=i, file=file, rule_id=f"{base}#metrics[{i}]", source="native"
        )
        key = _key(rule)
        if key in seen:
            raise RuleError(
                f"serves the same metric as {seen[key]}",
                file=file,
                rule=f"metrics[{i}] ({rule.name})",
                field="name",
            )
        seen[key] = rule.id
        rules.append(rule)
        warnings.extend(rule.warnings)
    return rules, warnings, set(seen)


def _compile_list(
    items: object, *, kind: MetricKind, path: str, file: str, base: str
) -> tuple[list[PrometheusAdapterRule], list[str]]:
    if items is None:
        return [], []
    if not isinstance(items, list):
        raise RuleError(f"{path} must be a list", file=file, field=path)
    rules: list[PrometheusAdapterRule] = []
    warnings: list[str] = []
    for i, raw in enumerate(items):
        where = f"{path}[{i}]"
        rule = compile_discovery_rule(
            raw, kind=kind, file=file, rule=where, rule_id=f"{base}#{where}"
        )
        rules.append(rule)
        warnings.extend(rule.warnings)
    return rules, warnings


def _load_prometheus_adapter(
    doc: dict[str, Any], *, file: str, base: str
) -> tuple[list[Rule], list[str], set[MetricKey]]:
    warnings: list[str] = []
    custom: list[PrometheusAdapterRule]
    external: list[PrometheusAdapterRule]
    if isinstance(doc.get("rules"), dict):
        # The Helm chart's values.yaml: everything but `rules` configures the chart itself.
        helm = doc["rules"]
        unknown = sorted(set(helm) - _HELM_KEYS)
        if unknown:
            raise RuleError(f"unknown keys {unknown} under rules", file=file, field="rules")
        others = sorted(set(doc) - {"rules"})
        if others:
            warnings.append(f"{base}: chart values {others} do not configure rules; ignored")
        default = helm.get("default", False)
        if not isinstance(default, bool):
            raise RuleError("must be true or false", file=file, field="rules.default")
        if default:
            warnings.append(
                f"{base}#rules.default: the chart's default rules are not included; write the "
                "ones you need under rules.custom"
            )
        for key in ("existing", "resource"):
            if helm.get(key):
                warnings.append(f"{base}#rules.{key}: not supported by this adapter; ignored")
        custom, w1 = _compile_list(
            helm.get("custom"), kind="custom", path="rules.custom", file=file, base=base
        )
        external, w2 = _compile_list(
            helm.get("external"), kind="external", path="rules.external", file=file, base=base
        )
    else:
        unknown = sorted(set(doc) - set(_PA_KEYS))
        if unknown:
            raise RuleError(
                f"unknown top-level keys {unknown}: a prometheus-adapter config has rules, "
                "externalRules and resourceRules",
                file=file,
            )
        if doc.get("resourceRules"):
            warnings.append(
                f"{base}#resourceRules: this adapter does not serve metrics.k8s.io; ignored"
            )
        custom, w1 = _compile_list(
            doc.get("rules"), kind="custom", path="rules", file=file, base=base
        )
        external, w2 = _compile_list(
            doc.get("externalRules"), kind="external", path="externalRules", file=file, base=base
        )
    warnings.extend(w1)
    warnings.extend(w2)
    # Names known at load: an external rule over one exact series name.
    known: set[MetricKey] = set()
    for rule in external:
        series = rule.discovery_name()
        name = rule.served_name(series) if series else None
        if name is not None:
            known.add((name, "external", None))
    return [*custom, *external], warnings, known


def load_rules_text(
    text: str,
    *,
    filename: str = "<string>",
    presets: bool = True,
    stackdriver: StackdriverOptions | None = None,
) -> RuleSet:
    """Compile rules from YAML text. Raises :class:`RuleError` naming ``filename``.

    ``stackdriver``: how Stackdriver-style names are served (see :func:`_with_presets`).
    """
    base = Path(filename).name or filename
    doc = _parse_yaml(text, file=filename)
    if not isinstance(doc, dict):
        raise RuleError(
            "not a rules file: expected a mapping with metrics (native) or rules/externalRules "
            "(prometheus-adapter)",
            file=filename,
        )
    fmt: RuleFormat
    if isinstance(doc.get("metrics"), list) and not any(k in doc for k in _PA_KEYS):
        fmt = "native"
        rules, warnings, known = _load_native(doc, file=filename, base=base)
    elif any(k in doc for k in _PA_KEYS) and "metrics" not in doc:
        fmt = "prometheus-adapter"
        rules, warnings, known = _load_prometheus_adapter(doc, file=filename, base=base)
    else:
        raise RuleError(
            "not a rules file: expected a top-level metrics list (native) or rules/externalRules "
            "(prometheus-adapter), not both",
            file=filename,
        )
    return _with_presets(
        rules, warnings, known, file=filename, fmt=fmt, include=presets, stackdriver=stackdriver
    )


def _with_presets(
    rules: list[Rule],
    warnings: list[str],
    known: set[MetricKey],
    *,
    file: str | None,
    fmt: RuleFormat,
    include: bool,
    stackdriver: StackdriverOptions | None,
) -> RuleSet:
    """The file's rules, then the presets, then the Stackdriver-style name families (lowest
    precedence: they answer only names no other rule serves). ``stackdriver=None`` (the
    default of the public loaders) or mode ``off`` leaves the families out; the ``serve`` and
    ``query`` commands pass the options from the settings, so they are on by default there."""
    out = list(rules)
    if include:
        for preset in preset_rules():
            if _key(preset) in known:
                warnings.append(f"{preset.id}: shadowed by a rule in {file}")
                continue
            out.append(preset)
    if stackdriver is not None:
        out.extend(stackdriver_rules(stackdriver, pods_queries=_pods_queries()))
    return RuleSet(rules=tuple(out), file=file, format=fmt, warnings=tuple(warnings))


def load_rules(
    path: str | Path | None,
    *,
    presets: bool = True,
    stackdriver: StackdriverOptions | None = None,
) -> RuleSet:
    """Load the rules file at ``path`` (``None``: presets only, format ``"none"``).

    ``stackdriver``: how Stackdriver-style names are served (``None``: not at all).

    Raises :class:`RuleError` for an unreadable, oversized or invalid file.
    """
    if path is None:
        return _with_presets(
            [], [], set(), file=None, fmt="none", include=presets, stackdriver=stackdriver
        )
    name = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror or exc}", file=name) from None
    if len(data) > MAX_FILE_BYTES:
        raise RuleError(f"larger than {MAX_FILE_BYTES} bytes", file=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(f"not UTF-8 (byte {exc.start})", file=name) from None
    return load_rules_text(text, filename=name, presets=presets, stackdriver=stackdriver)


def load_configured_rules(settings: Settings) -> RuleSet:
    """The rules a process serves: ``--config``, the presets and the name families, as
    ``settings`` say. ``serve``, ``query``, ``explain`` and the reload watcher all call this, so
    a reload compiles exactly what start-up did. Raises ``ConfigError`` when nothing would be
    served."""
    rules = load_rules(
        settings.rules.config,
        presets=settings.rules.presets,
        stackdriver=options_from_settings(settings),
    )
    if not rules.rules:
        raise ConfigError("no rules to serve: give --config or leave the presets on")
    return rules
