"""The part of Go's ``text/template`` that prometheus-adapter rules use: ``<<.Field>>`` references.

prometheus-adapter compiles ``metricsQuery`` and ``resources.template`` with the delimiters
``<<`` and ``>>``. Real rules only ever reference fields (``<<.Series>>``, ``<<.LabelMatchers>>``,
``<<.GroupBy>>``, ``<<.Group>>``, ``<<.Resource>>``), optionally with Go's whitespace-trim markers
(``<<- .Field ->>``). Anything else — pipelines, functions, ``range``, ``if``, comments, unknown
fields — is refused at compile time, so a rule fails when it is loaded, never on a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Field", "Template", "TemplateError", "compile_template", "go_slice"]

_LEFT = "<<"
_RIGHT = ">>"
_FIELD_RE = re.compile(r"^\.([A-Za-z_][A-Za-z0-9_]*)$")
_MAX_LENGTH = 65536


class TemplateError(ValueError):
    """The template uses something other than plain field references, or is malformed."""


@dataclass(frozen=True, slots=True)
class Field:
    """A ``<<.Name>>`` reference."""

    name: str


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template: literal text and field references, in order."""

    source: str
    parts: tuple[str | Field, ...]

    @property
    def fields(self) -> frozenset[str]:
        """Names of the fields referenced."""
        return frozenset(part.name for part in self.parts if isinstance(part, Field))

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute every field. Every referenced field must be in ``values``."""
        return "".join(part if isinstance(part, str) else values[part.name] for part in self.parts)


def compile_template(source: str, *, allowed: frozenset[str]) -> Template:
    """Compile ``source``; raise :class:`TemplateError` naming the first unsupported action.

    ``allowed`` is the set of field names the template may reference.
    """
    if len(source) > _MAX_LENGTH:
        raise TemplateError(f"template longer than {_MAX_LENGTH} characters")
    parts: list[str | Field] = []
    pos = 0
    while True:
        start = source.find(_LEFT, pos)
        if start < 0:
            parts.append(source[pos:])
            break
        end = source.find(_RIGHT, start + len(_LEFT))
        if end < 0:
            raise TemplateError(f"unclosed action at offset {start}: missing {_RIGHT!r}")
        text = source[pos:start]
        inner = source[start + len(_LEFT) : end]
        # Go's trim markers need a space between the dash and the action body.
        if inner.startswith(("- ", "-\t", "-\n")):
            text = text.rstrip()
            inner = inner[1:]
        trim_right = inner.endswith((" -", "\t-", "\n-"))
        if trim_right:
            inner = inner[:-1]
        parts.append(text)
        body = inner.strip()
        match = _FIELD_RE.match(body)
        if match is None:
            raise TemplateError(
                f"unsupported template action {_LEFT}{inner}{_RIGHT}: only field references "
                f"such as {_LEFT}.Series{_RIGHT} are supported"
            )
        name = match.group(1)
        if name not in allowed:
            raise TemplateError(
                f"unknown template field .{name}; supported: "
                + ", ".join(f".{field}" for field in sorted(allowed))
            )
        parts.append(Field(name))
        pos = end + len(_RIGHT)
        if trim_right:
            while pos < len(source) and source[pos].isspace():
                pos += 1
    return Template(source=source, parts=tuple(part for part in parts if part != ""))


def go_slice(values: Sequence[str]) -> str:
    """Render a string slice as Go's ``fmt`` does (``[a b]``): what ``<<.GroupBySlice>>`` prints."""
    return "[" + " ".join(values) + "]"
