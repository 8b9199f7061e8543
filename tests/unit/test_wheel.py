"""The runtime wheel holds the adapter and its data files, and nothing that ``serve`` never runs
(the simulators, the demo, the fake backend live in ``sim/``, outside the package)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_adapter_and_no_simulator(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("llm_metrics_adapter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if not n.startswith(("adapter/", "llm_metrics_adapter-"))]
    assert outside == [], f"files outside the adapter package: {outside}"
    assert not [n for n in names if "sim" in n.split("/") or "demo" in n or "fake" in n]
    for data in ("adapter/rules/presets.yaml", "adapter/api/static/ui.js", "adapter/py.typed"):
        assert data in names, f"{data} missing from the wheel"
    assert "adapter/cli.py" in names and "adapter/serving/server.py" in names
