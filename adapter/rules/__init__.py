"""Rules turn a metrics API request into a scoped backend query.

Three sources compile to the same :class:`adapter.rules.base.Rule` objects: the built-in presets,
the native rules file, and prometheus-adapter's rules file (detected automatically).
"""

from __future__ import annotations

from adapter.rules.base import (
    BuiltQuery,
    MetricKind,
    MetricRequest,
    QueryScope,
    Rule,
    RuleSource,
    ServedMetric,
)
from adapter.rules.loader import RuleSet, load_rules, load_rules_text

__all__ = [
    "BuiltQuery",
    "MetricKind",
    "MetricRequest",
    "QueryScope",
    "Rule",
    "RuleSet",
    "RuleSource",
    "ServedMetric",
    "load_rules",
    "load_rules_text",
]
