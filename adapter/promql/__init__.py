"""PromQL text: escaping, lexing, scope injection and the freshness companion. Pure.

This package is the only code that renders label values into PromQL. May import
:mod:`adapter.domain` only.
"""

from __future__ import annotations

from adapter.promql.injection import (
    FRESHNESS_LABEL,
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    MAX_TOKENS,
    SelectorInfo,
    escape_regex,
    escape_string,
    inject,
    render_matcher,
    render_matchers,
    requirements_to_matchers,
    selectors,
    validate,
    with_freshness,
)

__all__ = [
    "FRESHNESS_LABEL",
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "MAX_TOKENS",
    "SelectorInfo",
    "escape_regex",
    "escape_string",
    "inject",
    "render_matcher",
    "render_matchers",
    "requirements_to_matchers",
    "selectors",
    "validate",
    "with_freshness",
]
