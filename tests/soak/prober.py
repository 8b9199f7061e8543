"""Times ``GET /healthz`` from its own process: ``python -m tests.soak.prober URL SECONDS``.

The soak's load generator and fault proxy keep the test process's event loop busy, so a prober
in that loop measures its own queueing as much as the adapter's. This one runs alone, one request
every 50 ms on a keep-alive connection, and prints one JSON object on stdout at the end:
``{"latencies": [seconds, ...], "errors": [text, ...]}``.
"""

from __future__ import annotations

import json
import sys
import time

import httpx


def main(url: str, seconds: float) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=5, trust_env=False) as client:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                response = client.get("/healthz")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            else:
                if response.status_code == 200:
                    latencies.append(time.monotonic() - started)
                else:
                    errors.append(f"HTTP {response.status_code}")
            time.sleep(0.05)
    json.dump({"latencies": latencies, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
