"""`make test` runs the differential tier with its peer built: the Makefile, the markers and the
migration guide agree."""

from __future__ import annotations

import re
import tomllib

from tests.support import REPO


def _targets() -> dict[str, tuple[list[str], list[str]]]:
    """Makefile target → (prerequisites, recipe lines)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    current = ""
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([\w.-]+):(?!=)(.*)$", line)
        if match:
            current = match[1]
            out[current] = (match[2].split(), [])
        elif line.startswith("\t") and current:
            out[current][1].append(line.strip())
    return out


def test_make_test_builds_the_peer_and_runs_the_differential_tier() -> None:
    targets = _targets()
    assert "peer" in targets["test"][0]
    assert targets["test"][1] == ["$(BIN)/pytest -q tests"]
    assert any("bench/build-prometheus-adapter.sh" in line for line in targets["peer"][1])
    prerequisites, recipe = targets["differential"]
    assert "peer" in prerequisites and "control-plane" in prerequisites
    assert recipe == ["$(BIN)/pytest -q -m differential tests/differential"]
    tiers = re.search(r"^TIERS = \((.*)\)$", (REPO / "tests" / "conftest.py").read_text(), re.M)
    assert tiers is not None and '"differential"' in tiers[1]
    pytest_config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    ini = pytest_config["ini_options"]
    assert any(marker.startswith("differential:") for marker in ini["markers"])
    assert "-m" not in ini["addopts"].split()  # nothing deselects the tier in `make test`
    guide = (REPO / "docs" / "migration.md").read_text()
    assert "`make differential`, part of `make test`" in guide
