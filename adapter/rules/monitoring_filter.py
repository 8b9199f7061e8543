"""Cloud Monitoring filter text: quoting, clauses and label-selector translation. Pure.

This is the only module that puts values into Cloud Monitoring filters. Every value — metric
type, project, cluster, namespace, pod names, selector values — goes through :func:`quote`; keys
are never quoted, so they are checked against :data:`KEY_RE` instead. (The Stackdriver adapter
wrote pod names and single ``in`` values unquoted, a filter-injection hole.)

Selector translation follows custom-metrics-stackdriver-adapter's ``filterForSelector``:

==========================  =========================================
``k=v`` / ``k==v``          ``k = "v"``
``k!=v``                    ``k != "v"``
``k in (a)``                ``k = "a"``
``k in (a,b)``              ``k = one_of("a","b")``
``k notin (a)``             ``k != "a"``
``k notin (a,b)``           ``NOT k = one_of("a","b")``
``k`` (exists)              ``<prefix> : <label>`` (``metric.labels : container``)
``!k``                      refused (the filter language cannot say it)
``k>N`` / ``k<N``           ``k > N`` / ``k < N`` (integers)
``reducer=REDUCE_MEAN``     no clause: the cross-series reducer
==========================  =========================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from adapter.domain.errors import BadRequestError
from adapter.domain.models import Requirement

__all__ = [
    "ALLOWED_REDUCERS",
    "CUSTOM_FULL_NAMES",
    "CUSTOM_PREFIXES",
    "EXTERNAL_FULL_NAMES",
    "EXTERNAL_PREFIXES",
    "KEY_RE",
    "MAX_ONE_OF",
    "SelectorFilter",
    "compare",
    "equals",
    "has_label",
    "join",
    "not_equals",
    "one_of",
    "quote",
    "selector_filter",
]

MAX_ONE_OF: Final = 100
"""Most arguments Cloud Monitoring accepts in one ``one_of(...)``."""

KEY_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
"""A filter key (``metric.labels.container``): dotted identifiers, nothing to quote."""

CUSTOM_PREFIXES: Final = ("metric.labels",)
CUSTOM_FULL_NAMES: Final = ("reducer",)
EXTERNAL_PREFIXES: Final = (
    "metric.labels",
    "resource.labels",
    "metadata.system_labels",
    "metadata.user_labels",
)
EXTERNAL_FULL_NAMES: Final = ("resource.type", "reducer")
ALLOWED_REDUCERS: Final = frozenset(
    {
        "REDUCE_NONE",
        "REDUCE_MEAN",
        "REDUCE_MIN",
        "REDUCE_MAX",
        "REDUCE_SUM",
        "REDUCE_STDDEV",
        "REDUCE_COUNT",
        "REDUCE_COUNT_TRUE",
        "REDUCE_COUNT_FALSE",
        "REDUCE_FRACTION_TRUE",
        "REDUCE_PERCENTILE_99",
        "REDUCE_PERCENTILE_95",
        "REDUCE_PERCENTILE_50",
        "REDUCE_PERCENTILE_05",
    }
)

_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """``value`` as a double-quoted filter string: ``\\`` and ``"`` backslash-escaped, ``\\n``,
    ``\\r``, ``\\t`` named. Other control characters cannot be written safely: they raise
    :class:`BadRequestError` (no Kubernetes name or label value contains them)."""
    out = ['"']
    for char in value:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF:
            raise BadRequestError(
                f"value contains control character U+{ord(char):04X}; refused in a filter"
            )
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _key(key: str) -> str:
    if not KEY_RE.match(key):
        raise BadRequestError(
            f"{key!r} cannot be used in a Cloud Monitoring filter (dotted identifiers only)"
        )
    return key


def equals(key: str, value: str) -> str:
    """``key = "value"``."""
    return f"{_key(key)} = {quote(value)}"


def not_equals(key: str, value: str) -> str:
    """``key != "value"``."""
    return f"{_key(key)} != {quote(value)}"


def one_of(key: str, values: Sequence[str], *, negate: bool = False) -> str:
    """``key = one_of("a","b")`` (``NOT …`` when ``negate``); one value is a plain (in)equality.

    At most :data:`MAX_ONE_OF` values; callers chunk longer lists.
    """
    if not values:
        raise BadRequestError(f"one_of on {key!r} needs at least one value")
    if len(values) > MAX_ONE_OF:
        raise BadRequestError(f"one_of on {key!r} takes at most {MAX_ONE_OF} values")
    if len(values) == 1:
        return not_equals(key, values[0]) if negate else equals(key, values[0])
    clause = f"{_key(key)} = one_of({','.join(quote(v) for v in values)})"
    return f"NOT {clause}" if negate else clause


def has_label(prefix: str, label: str) -> str:
    """``prefix : label`` — the series carries ``label`` (``metric.labels : container``)."""
    return f"{_key(prefix)} : {_key(label)}"


def compare(key: str, op: str, value: str) -> str:
    """``key > N`` or ``key < N``; ``value`` must be a decimal integer."""
    if op not in (">", "<"):
        raise BadRequestError(f"unknown comparison {op!r}")
    if not re.fullmatch(r"-?[0-9]{1,19}", value):
        raise BadRequestError(f"{key} {op} needs an integer, got {value!r}")
    return f"{_key(key)} {op} {int(value)}"


def join(clauses: Iterable[str]) -> str:
    """The clauses, deduplicated and sorted (a stable text for cache keys), joined by ``AND``."""
    return " AND ".join(sorted(set(clauses)))


@dataclass(frozen=True, slots=True)
class SelectorFilter:
    """A translated selector: filter clauses, the cross-series reducer, and a project switch."""

    clauses: tuple[str, ...]
    reducer: str | None = None
    project: str | None = None


def _allowed(key: str, prefixes: Sequence[str], full_names: Sequence[str]) -> bool:
    return key in full_names or any(key.startswith(p + ".") for p in prefixes)


def selector_filter(
    requirements: Sequence[Requirement],
    *,
    prefixes: Sequence[str],
    full_names: Sequence[str],
) -> SelectorFilter:
    """Translate a label selector to filter clauses, as the Stackdriver adapter does.

    ``prefixes``/``full_names`` are the keys the metric kind accepts (:data:`CUSTOM_PREFIXES`…).
    ``resource.labels.project_id=P`` (external) both filters and switches the project read.
    Raises :class:`BadRequestError` for disallowed keys, ``!key`` and malformed reducers.
    """
    clauses: list[str] = []
    reducer: str | None = None
    project: str | None = None
    for req in requirements:
        if req.key == "reducer" and "reducer" in full_names:
            if req.op != "=" or len(req.values) != 1:
                raise BadRequestError("reducer must be given as reducer=REDUCE_…")
            if req.values[0] not in ALLOWED_REDUCERS:
                raise BadRequestError(f"reducer {req.values[0]!r} is not supported")
            reducer = req.values[0]
            continue
        if not _allowed(req.key, prefixes, full_names):
            raise BadRequestError(
                f"label {req.key!r} is not allowed in this selector (allowed: "
                f"{', '.join(p + '.*' for p in prefixes)}, {', '.join(full_names)})"
            )
        if req.key == "resource.labels.project_id":
            if req.op != "=":
                raise BadRequestError("resource.labels.project_id must be selected with '='")
            project = req.values[0]
        if req.op == "=":
            clauses.append(equals(req.key, req.values[0]))
        elif req.op == "!=":
            clauses.append(not_equals(req.key, req.values[0]))
        elif req.op in ("in", "notin"):
            clauses.append(one_of(req.key, req.values, negate=req.op == "notin"))
        elif req.op == "exists":
            prefix = next((p for p in prefixes if req.key.startswith(p + ".")), None)
            if prefix is None:
                raise BadRequestError(f"label {req.key!r} cannot be tested for existence")
            clauses.append(has_label(prefix, req.key[len(prefix) + 1 :]))
        elif req.op == "!":
            raise BadRequestError(
                "the does-not-exist operator (!key) cannot be expressed in a Cloud Monitoring filter"
            )
        else:
            clauses.append(compare(req.key, ">" if req.op == "gt" else "<", req.values[0]))
    return SelectorFilter(clauses=tuple(clauses), reducer=reducer, project=project)
