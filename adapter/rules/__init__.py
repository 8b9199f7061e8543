"""Rules turn a metrics API request into a scoped backend query.

Three sources compile to the same :class:`adapter.rules.base.Rule` objects: the built-in presets,
the native rules file, and prometheus-adapter's rules file (detected automatically).
"""

from __future__ import annotations

from adapter.rules import base
from adapter.rules.base import *  # noqa: F403  (the compiled form, re-exported: base.__all__)
from adapter.rules.loader import RuleSet, load_rules, load_rules_text

__all__ = [*base.__all__, "RuleSet", "load_rules", "load_rules_text"]
