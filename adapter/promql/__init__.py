"""PromQL text: escaping, lexing, scope injection and the freshness companion. Pure.

- :mod:`~adapter.promql.escape`: label values and matchers rendered as PromQL (the only place);
- :mod:`~adapter.promql.lexer`: where each vector selector is in a query's text;
- :mod:`~adapter.promql.injection`: scope matchers spliced into every selector, cross-checked
  against ``promql_parser``'s view of the same text (fail closed);
- :mod:`~adapter.promql.freshness`: the companion query that dates each answer's inputs.

May import :mod:`adapter.domain` only.
"""

from __future__ import annotations

from adapter.promql.escape import (
    escape_regex,
    escape_string,
    render_matcher,
    render_matchers,
    requirements_to_matchers,
)
from adapter.promql.freshness import FRESHNESS_LABEL, with_freshness
from adapter.promql.injection import SelectorInfo, inject, selectors, validate
from adapter.promql.lexer import MAX_DEPTH, MAX_QUERY_LENGTH, MAX_TOKENS

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
