"""The docs describe the product as it is: every serve flag is documented, with help text."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import typer.main

from adapter.cli import app

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
