"""The scrape path's safety over real HTTP: the adapter's backend credentials (a bearer token
file and configured headers, a cookie among them) reach the backend and never a pod; a sample
older than ``--max-sample-age`` (an explicit exposition timestamp) is never served."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from adapter.backends.factory import build_backend
from adapter.core.provider import Trace
from adapter.core.request import parse_path_string
from adapter.core.sources import find_scrape_first
from adapter.domain.errors import NotFoundError
from adapter.rules.loader import load_rules
from adapter.scrape.source import SCRAPE_SOURCE
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from tests.support.app import fleet_context
from tests.support.fake_fleet import fleet_backend

pytestmark = pytest.mark.integration

TOKEN = "s3cret-bearer-token"
COOKIE = "session=s3cret-cookie"
METRIC = "jetstream_prefill_backlog_size"


class Recorder(ThreadingHTTPServer):
    """Serves ``body`` (an exposition at any path but the query API, a Prometheus vector at
    ``/api/v1/query``) on 127.0.0.1 and records every request's headers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body = b""
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path.startswith("/api/v1/query"):
            vector = [{"metric": {"pod": "p"}, "value": [time.time(), "1"]}]
            data = {"resultType": "vector", "result": vector}
            body = json.dumps({"status": "success", "data": data}).encode()
            kind = "application/json"
        else:
            body, kind = self.server.body, "text/plain; version=0.0.4"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """A pod and a "Prometheus"."""
    made = (Recorder(), Recorder())
    for server in made:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield made
    for server in made:
        server.shutdown()
        server.server_close()


def _targets(path: Path, url: str, pod: str = "a-0") -> str:
    path.write_text(yaml.safe_dump([{"namespace": "team-a", "pod": pod, "url": url}]))
    return str(path)


async def test_no_adapter_credential_is_sent_to_a_pod(
    servers: tuple[Recorder, Recorder], tmp_path: Path
) -> None:
    pod, prometheus = servers
    pod.body = f'# TYPE {METRIC} gauge\n{METRIC}{{id="a-0"}} 4\n'.encode()
    token = tmp_path / "token"
    token.write_text(TOKEN)
    settings = Settings.from_options(
        cluster="c1",
        standalone=True,
        prometheus_url=prometheus.url,
        prometheus_bearer_token_file=str(token),
        prometheus_headers={"Cookie": COOKIE, "X-Scope-OrgID": "tenant-1"},
        scrape_pods=True,
        scrape_targets=_targets(tmp_path / "targets.yaml", pod.url + "/metrics"),
    )
    ctx = build_context(settings, backend=build_backend(settings), rules=load_rules(None))
    async with ctx:
        source = find_scrape_first(ctx.provider.backend)
        assert source is not None
        scoped = f'{METRIC}{{cluster="c1",namespace="team-a"}}'
        scraped = await source.query(f"sum({scoped})", timeout=2)
        asked = await source.query(f"topk(1, {scoped})", timeout=2)  # outside the subset
    assert scraped.backend == SCRAPE_SOURCE and [s.value for s in scraped.samples] == [4.0]
    assert asked.backend != SCRAPE_SOURCE
    # The credentials are configured and in use: the backend got them.
    (_, backend_headers), *_ = prometheus.seen
    assert backend_headers["authorization"] == f"Bearer {TOKEN}"
    assert backend_headers["cookie"] == COOKIE
    # The pod got none of them.
    assert [path for path, _ in pod.seen] == ["/metrics"]
    for _, headers in pod.seen:
        assert not {"authorization", "cookie", "x-scope-orgid", "proxy-authorization"} & set(
            headers
        ), headers
        assert TOKEN not in str(headers) and "s3cret" not in str(headers)


@pytest.mark.parametrize(("age_s", "served"), [(120.0, False), (2.0, True)])
async def test_a_scraped_sample_older_than_max_sample_age_is_never_served(
    servers: tuple[Recorder, Recorder], tmp_path: Path, age_s: float, served: bool
) -> None:
    """The pod stamps its sample (an explicit exposition timestamp) ``age_s`` seconds ago."""
    pod, _ = servers
    stamp = int((time.time() - age_s) * 1000)
    pod.body = f'# TYPE {METRIC} gauge\n{METRIC}{{id="a-0"}} 4 {stamp}\n'.encode()
    ctx = fleet_context(
        fleet_backend(),
        cache_ttl=0.0,
        max_sample_age=60.0,
        scrape_pods=True,
        scrape_targets=_targets(tmp_path / "targets.yaml", pod.url + "/metrics"),
    )
    async with ctx:
        await ctx.registry.refresh()
        trace = Trace()
        path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/pods/a-0/{METRIC}"
        try:
            answer = await ctx.provider.answer(parse_path_string(path), trace=trace)
            values = [item["value"] for item in answer.body["items"]]
        except NotFoundError:
            values = []
    assert trace.result is not None and trace.result.backend == SCRAPE_SOURCE
    assert [(s.value, round(s.timestamp * 1000)) for s in trace.result.samples] == [(4.0, stamp)]
    if served:
        assert values == ["4"] and not trace.dropped
    else:
        assert values == []  # the HPA sees the pod's metric missing, not a 2-minute-old value
        assert [d.value for d in trace.dropped] == [4.0]
        assert trace.dropped[0].reason == "too-old", trace.dropped
