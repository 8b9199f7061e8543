"""``--help`` is readable at 80 columns: every flag name whole, options in titled panels."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from adapter import cli
from adapter.settings import options

COMMANDS: dict[str, Any] = typer.main.get_command(cli.app).commands  # type: ignore[attr-defined]


def help_text(*command: str, columns: int = 80) -> str:
    result = CliRunner().invoke(cli.app, [*command, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("columns", [80, 60])
def test_every_flag_name_appears_whole(name: str, columns: int) -> None:
    text = help_text(name, columns=columns)
    assert "…" not in text
    assert all(len(line) <= columns for line in text.splitlines()), text
    flags = [o for p in COMMANDS[name].params for o in (*p.opts, *p.secondary_opts)]
    for flag in [*flags, "--help"]:
        if flag.startswith("--"):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (name, flag)
    for param in COMMANDS[name].params:
        if param.param_type_name == "argument":
            assert str(param.name).upper() in text


def test_serve_shows_each_settings_group_as_a_titled_panel() -> None:
    text = help_text("serve")
    for panel in {o.panel for o in options() if o.has_flag}:
        assert f"╭─ {panel} " in text
    # The description is reflowed to the width, not broken at the source's line ends.
    assert "(the aggregator's front-proxy certificate, client certificates, bearer tokens)" in (
        " ".join(text.split())
    )
    assert not any(line.strip() == "With" for line in text.splitlines())


def test_a_switch_that_is_off_by_default_has_no_useless_twin() -> None:
    text = help_text("serve")
    for flag in ("--standalone", "--all-clusters", "--prometheus-insecure-skip-verify"):
        assert f"--no-{flag[2:]}" not in text
    assert "--presets / --no-presets" in text  # on by default: the twin turns it off


def test_the_top_level_help_lists_the_commands() -> None:
    text = help_text()
    assert "…" not in text
    for name in COMMANDS:
        assert name in text
