"""``make demo``, as the README documents it (``DEMO_SECONDS=… make demo``), run on this machine:
it exits 0 by itself, and its last table shows every JetStream metric with a value through
Prometheus and one read from the pods, each with its age."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration

SECONDS = 12
JETSTREAM = (
    "jetstream_prefill_backlog_size",
    "jetstream_slots_used_percentage",
    "memory_used_percentage",
)


def _last_table_rows(output: str) -> dict[tuple[str, str], list[str]]:
    tables = output.split("What the HPA reads now")
    assert len(tables) >= 2, output[-3000:]
    rows = {}
    for line in tables[-1].splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 8 and cells[0]:
            rows[cells[0], cells[1]] = cells[2:]
    return rows


def test_make_demo_shows_both_paths_and_stops_by_itself() -> None:
    env = {**os.environ, "DEMO_SECONDS": str(SECONDS), "COLUMNS": "200"}
    result = subprocess.run(
        ["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "--scrape-pods" in result.stdout
    rows = _last_table_rows(result.stdout)
    quantity = re.compile(r"^\d+(\.\d+)?m?$")
    for namespace in ("default", "other"):
        for metric in JETSTREAM:
            prometheus, age, pods, pods_age, *_ = rows[namespace, metric]
            assert quantity.match(prometheus) and quantity.match(pods), rows[namespace, metric]
            assert re.match(r"^\d+s$", age) and re.match(r"^\d+s$", pods_age)
            assert int(pods_age[:-1]) <= 2, rows[namespace, metric]
    assert "stopped the adapters" in result.stdout
