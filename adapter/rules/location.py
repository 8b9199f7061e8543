"""Where a rule sits in its file, so every compile error names the file, the rule and the field.

Native rules and prometheus-adapter rules are compiled by separate steps (resource, naming,
query, namespace label); each step receives the rule's :class:`RuleLocation` and raises through
it, so the messages read the same whichever step or format found the fault::

    file rules.yaml, rule metrics[2] (prefill_backlog), field namespaceLabel: 'a-b' is not ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from adapter.domain.errors import RuleError
from adapter.rules.scoping import LABEL_NAME_RE

__all__ = ["RuleLocation"]

_Spec = TypeVar("_Spec", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class RuleLocation:
    """The file and the rule's place in it (``metrics[0] (name)``, ``rules.external[2]``)."""

    file: str
    rule: str

    def error(self, message: str, field: str = "") -> RuleError:
        """The :class:`RuleError` for ``message`` at this rule (and ``field``, when given)."""
        return RuleError(message, file=self.file, rule=self.rule, field=field)

    def parse(self, model: type[_Spec], raw: object, *, what: str) -> _Spec:
        """``raw`` validated as ``model``. A non-mapping fails as "each ``what`` must be a
        mapping"; a validation failure reports pydantic's first error at its field path."""
        if not isinstance(raw, dict):
            raise self.error(f"each {what} must be a mapping")
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"])
            raise self.error(str(first["msg"]), loc) from None

    def label_name(self, value: str, field: str) -> str:
        """``value`` when it is a valid Prometheus label name; else the error at ``field``."""
        if not LABEL_NAME_RE.match(value):
            raise self.error(f"{value!r} is not a valid label name", field)
        return value
