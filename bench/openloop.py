"""Open-loop load with vegeta: a fixed request rate that does not slow down when the server does.

A closed-loop generator (wrk) sends the next request only when an answer came back, so a slow
server is asked less and its queueing delay never shows (coordinated omission). ``vegeta attack
-rate R`` sends R requests/s whatever happens and measures each from its scheduled send.

:func:`targets` renders vegeta's HTTP targets format (each request with its Authorization
header); :func:`parse_report` reads ``vegeta report -type=json``; :func:`attack` runs both.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

__all__ = ["attack", "parse_report", "rates", "targets"]


def targets(base_url: str, paths: Sequence[str], token: str) -> str:
    """vegeta's ``-format=http`` targets: ``GET url``, the header, a blank line, per path."""
    if not paths:
        raise ValueError("no paths to attack")
    for p in paths:
        if not p.startswith("/") or any(c in p for c in " \r\n"):
            raise ValueError(f"not a request path: {p!r}")
    return "".join(
        f"GET {base_url}{p}\nAuthorization: Bearer {token}\nAccept: application/json\n\n"
        for p in paths
    )


def parse_report(text: str) -> dict[str, Any]:
    """``vegeta report -type=json`` → requests, rate, success ratio, p50/p90/p99/max in ms."""
    try:
        doc = json.loads(text)
        lat = doc["latencies"]
        out = {
            "requests": int(doc["requests"]),
            "rate": round(float(doc["rate"]), 1),
            "throughput": round(float(doc["throughput"]), 1),
            "success": round(float(doc["success"]), 4),
            "p50_ms": round(lat["50th"] / 1e6, 3),
            "p90_ms": round(lat["90th"] / 1e6, 3),
            "p99_ms": round(lat["99th"] / 1e6, 3),
            "max_ms": round(lat["max"] / 1e6, 3),
            "status_codes": {str(k): int(v) for k, v in (doc.get("status_codes") or {}).items()},
            "errors": [str(e)[:200] for e in (doc.get("errors") or [])][:5],
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a vegeta JSON report: {exc!r}: {text[:200]!r}") from exc
    if out["requests"] <= 0:
        raise ValueError("vegeta report with no requests")
    return out


def rates(peer_max: float, own_max: float) -> list[tuple[str, float]]:
    """(label, requests/s): 25, 50 and 80 % of the peer's maximum, then the adapter's own."""
    if peer_max <= 0 or own_max <= 0:
        raise ValueError(f"maximum throughputs must be positive: {peer_max}, {own_max}")
    out = [(f"{pct} % of peer max", round(peer_max * pct / 100, 1)) for pct in (25, 50, 80)]
    out.append(("own max", round(own_max, 1)))
    return out


def attack(
    vegeta: str, base_url: str, paths: Sequence[str], *, token: str, rate: float, seconds: float
) -> dict[str, Any]:
    """``vegeta attack`` at ``rate`` requests/s for ``seconds``, then its JSON report."""
    with tempfile.TemporaryDirectory(prefix="lma-vegeta-") as tmp:
        tfile = os.path.join(tmp, "targets.txt")
        with open(tfile, "w", encoding="utf-8") as handle:
            handle.write(targets(base_url, paths, token))
        os.chmod(tfile, 0o600)
        results = os.path.join(tmp, "results.bin")
        run = subprocess.run(
            [
                vegeta,
                "attack",
                f"-targets={tfile}",
                "-format=http",
                f"-rate={max(1, round(rate))}/1s",
                f"-duration={max(1, round(seconds))}s",
                "-insecure",
                "-keepalive",
                "-timeout=10s",
                f"-output={results}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError(f"vegeta attack failed ({run.returncode}): {run.stderr[-500:]}")
        report = subprocess.run(
            [vegeta, "report", "-type=json", results],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if report.returncode != 0:
            raise RuntimeError(
                f"vegeta report failed ({report.returncode}): {report.stderr[-500:]}"
            )
    out = parse_report(report.stdout)
    out["target_rate"] = round(rate, 1)
    return out
