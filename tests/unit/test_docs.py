"""The docs describe the product as it is: every serve flag is documented, with help text, and
the defaults and environment variables docs/configuration.md states are the settings'."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer.main

from adapter.cli import app
from adapter.settings import options

ROOT = Path(__file__).resolve().parents[2]
SERVE = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
FLAGS = [p for p in SERVE.params if p.param_type_name == "option"]
assert FLAGS, "no serve options found: the test would check nothing"


@pytest.mark.parametrize("option", FLAGS, ids=lambda p: p.opts[0])
def test_every_serve_flag_is_documented(option: click.Parameter) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert f"`{option.opts[0]}`" in text, f"{option.opts[0]} missing from docs/configuration.md"
    assert getattr(option, "help", None), f"{option.opts[0]} has no help text"


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```")[1].split("\n", 1)[1]  # drop the language tag
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == [
        "make demo",
        "make test",
    ]


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` is a pipe inside a cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _documented_defaults() -> list[tuple[str, str, str | None]]:
    """``(flag, default, environment variable or None)`` of every table row in
    docs/configuration.md whose table has a default column and whose first cell is a flag."""
    rows: list[tuple[str, str, str | None]] = []
    header: list[str] = []
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = _cells(line)
        if not header:
            header = [c.lower() for c in cells]
            continue
        flag = re.match(r"`(--[a-z0-9-]+)`", cells[0])
        if flag is None or "default" not in header:
            continue
        default = re.match(r"`([^`]*)`", cells[header.index("default")])
        env = re.search(r"`(LMA_[A-Z_]+)`", line)
        rows.append((flag.group(1), default.group(1) if default else "", env and env.group(1)))
    return rows


DOCUMENTED = _documented_defaults()
DESCRIBED = {o.flag: o for o in options() if o.has_flag}


def _same_default(documented: str, described: object) -> bool:
    if described is None:
        return documented == ""
    if isinstance(described, bool):
        return documented == ("on" if described else "off")
    if isinstance(described, int | float):
        return float(documented) == described
    return documented == described


def test_the_default_tables_cover_every_flag() -> None:
    assert {flag for flag, _, _ in DOCUMENTED} == set(DESCRIBED)


@pytest.mark.parametrize(("flag", "default", "env"), DOCUMENTED, ids=lambda v: str(v))
def test_documented_default_and_variable_are_the_settings_description(
    flag: str, default: str, env: str | None
) -> None:
    option = DESCRIBED[flag]
    assert _same_default(default, option.flag_default), (flag, default, option.flag_default)
    assert env == option.env, flag


def test_the_resource_mapping_timings_are_the_code_defaults() -> None:
    """docs/configuration.md states when the cluster's resources are read again: on a miss at
    most every ``RestMapper.min_interval`` seconds, and every ``MetricRegistry.resource_poll``
    seconds while a rule waits for a resource."""
    import inspect

    from adapter.core.registry import MetricRegistry
    from adapter.kube.mapper import RestMapper

    doc = " ".join((ROOT / "docs" / "configuration.md").read_text().split())
    min_interval = inspect.signature(RestMapper).parameters["min_interval"].default
    poll = inspect.signature(MetricRegistry).parameters["resource_poll"].default
    assert f"(at most every {min_interval:g} s)" in doc
    assert f"read again every {poll:g} s while a rule waits" in doc


def _readme_use_commands() -> list[list[str]]:
    """The argument lists of the README's "Use" block, comments dropped."""
    import shlex

    block = (ROOT / "README.md").read_text().split("## Use", 1)[1].split("```sh", 1)[1]
    lines = [line.split("  #")[0].strip() for line in block.split("```", 1)[0].splitlines()]
    commands = [shlex.split(line) for line in lines if line]
    assert commands and all(c[0] == "llm-metrics-adapter" for c in commands), commands
    return [c[1:] for c in commands]


@pytest.mark.parametrize("argv", _readme_use_commands(), ids=lambda a: a[0])
def test_the_readme_s_commands_are_what_the_cli_takes(argv: list[str]) -> None:
    """Each command of the README's "Use" block parses as written: the command and every flag
    exist, arguments are where the command expects them (nothing is run)."""
    command = typer.main.get_command(app).commands[argv[0]]  # type: ignore[attr-defined]
    command.make_context(argv[0], argv[1:])  # raises on an unknown flag or a misplaced argument
    takes = {opt for p in command.params for opt in p.opts}
    flags = [a.split("=")[0] for a in argv[1:] if a.startswith("--")]
    assert set(flags) <= takes, (argv, sorted(set(flags) - takes))
