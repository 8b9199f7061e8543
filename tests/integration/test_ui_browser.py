"""``/debug/ui`` in a real headless Chromium against a real adapter, Prometheus and fleet.

The adapter runs as a subprocess in standalone mode (``python -m adapter serve --standalone``)
on a real Prometheus scraping :class:`sim.fleet.SimFleet` (JetStream pods in namespaces
``default`` and ``other``, whose load moves every second). Chromium is driven by selenium through
Debian's ``chromedriver``; a missing browser FAILS naming ``make browser``.

What is checked: the page draws every served metric of the namespace from live data (the page
exposes ``data-ticks``/``data-series`` on ``<body>`` and ``data-points`` on each ``<canvas>``),
legends name exactly that namespace's pods, the browser console stays free of errors, and the
HPA cards render a real :func:`adapter.hpa.explain.explain_hpa` document (standalone there is no
Kubernetes, so that document is made in this process and handed to the page's ``fetch``).
Screenshots go to ``$TMPDIR/llm-metrics-ui-*.png`` for a human to look at.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.core.cache import SingleFlightCache
from adapter.core.provider import Answer, MetricsProvider, Trace
from adapter.core.request import ApiRequest
from adapter.core.sources import ScrapeFirst
from adapter.domain.models import MetricValue, ObjectRef, QueryResult
from adapter.hpa.explain import explain_hpa
from adapter.scrape.source import SCRAPE_SOURCE, PodScraper
from sim.fake_backend import FakeBackend
from sim.fleet import SimFleet
from sim.prometheus import LocalPrometheus
from tests.support.adapter_process import AdapterProcess
from tests.support.waiting import wait_until

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
_BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
_DRIVER_CANDIDATES = ("chromedriver",)
_PAGE_S = 45.0  # seconds


# --------------------------------------------------------------------------- the servers


class _Stepper(threading.Thread):
    """Moves the fleet's load once a second so the charts have something to draw."""

    def __init__(self, fleet: SimFleet) -> None:
        super().__init__(name="fleet-stepper", daemon=True)
        self.fleet = fleet
        self.stop_event = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.fleet.step(time.monotonic() - self._t0)


@pytest.fixture(scope="module")
def adapter_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standalone adapter subprocess on a real Prometheus over a moving SimFleet."""
    log = tmp_path_factory.mktemp("ui-adapter") / "adapter.log"
    with SimFleet() as fleet, LocalPrometheus(fleet.targets) as prom:
        stepper = _Stepper(fleet)
        stepper.start()
        try:
            prom.wait_for(
                "count(jetstream_prefill_backlog_size)",
                lambda s: len(s) == 1 and s[0].value == len(fleet.pods),
                timeout=30,
            )
            args = ["--standalone", "--prometheus-url", prom.url, "--cluster", fleet.cluster]
            with AdapterProcess.running(args, log=log) as adapter:
                yield adapter.url
        finally:
            stepper.stop_event.set()
            stepper.join(timeout=5)


# --------------------------------------------------------------------------- the browser


def _find(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium (new profile) with the browser console log enabled."""
    chromium, driver_path = _find(_BROWSER_CANDIDATES), _find(_DRIVER_CANDIDATES)
    if chromium is None or driver_path is None:
        missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver_path)) if not p]
        pytest.fail(
            f"{' and '.join(missing)} not found: run `make browser` (Debian's chromium and"
            " chromium-driver)",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run `pip install -e '.[dev]'`", pytrace=False)
    profile = tempfile.mkdtemp(prefix="llm-metrics-ui-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.set_page_load_timeout(_PAGE_S)
        driver.set_script_timeout(_PAGE_S)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _console_errors(
    driver: Any, *, allow: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return [
        e for e in entries if e.get("level") == "SEVERE" and not (allow is not None and allow(e))
    ]


def _screenshot(driver: Any, name: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"llm-metrics-ui-{name}.png"
    driver.save_screenshot(str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, "a blank screenshot"
    return path


def _ticks(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.ticks || 0)"))


def _cards(driver: Any, container: str) -> list[dict[str, Any]]:
    """Each card of ``#container``: title, legend text and the points its canvas drew."""
    cards: list[dict[str, Any]] = driver.execute_script(
        """
        return [...document.querySelectorAll(`#${arguments[0]} .card`)].map((c) => ({
          title: c.querySelector("h3").textContent,
          legend: c.querySelector(".meta").innerText,
          points: Number(c.querySelector("canvas").dataset.points),
        }));
        """,
        container,
    )
    return cards


# --------------------------------------------------------------------------- tests


def test_the_page_charts_every_served_metric_from_live_data(adapter_url: str, browser: Any) -> None:
    served = httpx.get(adapter_url + "/debug/series", params={"namespace": "default"}, timeout=10)
    assert served.status_code == 200, served.text
    doc = served.json()
    assert not doc["errors"], doc["errors"]
    expected_cards = {f"{s['group']}/{s['metric']} (namespace default)" for s in doc["series"]}
    assert expected_cards, "the adapter serves no metric for namespace default"

    browser.get(adapter_url + "/debug/ui?namespace=default")
    # Three polls: every chart has several points of its own, drawn from live answers.
    wait_until("three polls of /debug/series", lambda: _ticks(browser) >= 3, timeout_s=_PAGE_S)
    cards = _cards(browser, "metrics")
    assert {c["title"] for c in cards} == expected_cards
    assert all(c["points"] >= 2 for c in cards), cards
    assert browser.find_element("id", "errors").text == ""
    assert int(browser.execute_script("return Number(document.body.dataset.series)")) >= len(
        expected_cards
    )

    # Pods metrics name exactly the pods of namespace default, never those of `other`.
    backlog = next(c for c in cards if c["title"].startswith("custom/jetstream_prefill_backlog"))
    for i in range(3):
        assert f"default-jetstream-{i}:" in backlog["legend"], backlog
    assert "other-jetstream" not in json.dumps(cards)

    # The values move (the fleet steps every second): later polls add points.
    before = sum(c["points"] for c in cards)
    seen = _ticks(browser)
    wait_until("two more polls", lambda: _ticks(browser) >= seen + 2, timeout_s=_PAGE_S)
    assert sum(c["points"] for c in _cards(browser, "metrics")) > before

    print(f"screenshot: {_screenshot(browser, 'metrics')}")
    assert _console_errors(browser) == []


def test_another_namespace_shows_its_own_pods(adapter_url: str, browser: Any) -> None:
    browser.get(adapter_url + "/debug/ui?namespace=other")
    wait_until("two polls", lambda: _ticks(browser) >= 2, timeout_s=_PAGE_S)
    cards = _cards(browser, "metrics")
    assert cards and all(c["title"].endswith("(namespace other)") for c in cards)
    backlog = next(c for c in cards if c["title"].startswith("custom/jetstream_prefill_backlog"))
    assert "other-jetstream-0:" in backlog["legend"] and "other-jetstream-1:" in backlog["legend"]
    assert "default-jetstream" not in backlog["legend"]
    assert browser.find_element("id", "namespace").get_attribute("value") == "other"
    assert _console_errors(browser) == []


def test_standalone_hpa_cards_show_why_not_an_exception(adapter_url: str, browser: Any) -> None:
    """Standalone, ``/debug/hpa`` answers 400: the page says so and keeps charting."""
    browser.get(adapter_url + "/debug/ui?namespace=default&hpa=default/server")
    wait_until("two polls", lambda: _ticks(browser) >= 2, timeout_s=_PAGE_S)
    errors = browser.find_element("id", "errors").text
    assert errors.startswith("HPA default/server: 400"), errors
    assert "Kubernetes" in errors
    assert _cards(browser, "metrics"), "series charts must survive an HPA error"

    # The only console entry allowed is the browser's own note about that 400 response.
    def the_expected_400(entry: dict[str, Any]) -> bool:
        return entry.get("source") == "network" and "/debug/hpa/default/server" in str(
            entry.get("message")
        )

    assert _console_errors(browser, allow=the_expected_400) == []


# --------------------------------------------------------------------------- HPA cards


class _FakeKube:
    """An HPA on a 2-replica Deployment with one External and one Pods metric."""

    async def read_hpa(self, namespace: str, name: str) -> dict[str, Any]:
        metric = {"metric": {"name": "jetstream_prefill_backlog_size"}}
        return {
            "metadata": {"namespace": namespace, "name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            **metric,
                            "target": {"type": "AverageValue", "averageValue": "5"},
                        },
                    },
                    {
                        "type": "Pods",
                        "pods": {**metric, "target": {"type": "AverageValue", "averageValue": "4"}},
                    },
                ],
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 3},
        }

    async def read_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        return {"spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=server"}}

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {"name": f"server-{i}", "namespace": namespace},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }
            for i in range(2)
        ]


class _FakeProvider:
    """Answers like :class:`MetricsProvider`: a total of 12 (external), 6 per pod (pods), from
    the pods (``--scrape-pods``, its default 1 s ``--scrape-min-interval``), through a cache of
    a 5 s ``ttl``."""

    cache = SingleFlightCache[tuple[str, str], QueryResult](ttl=5.0)
    backend = ScrapeFirst(FakeBackend(), PodScraper([], cluster="c1", min_interval=1.0))

    async def answer(self, request: ApiRequest, *, trace: Trace | None = None) -> Answer:
        trace = trace or Trace()
        trace.result = QueryResult(query="q", samples=(), backend=SCRAPE_SOURCE)
        now = time.time()
        if request.group == "external":
            values = [MetricValue(request.metric, 12.0, now)]
        else:
            values = [
                MetricValue(request.metric, 6.0, now, described=ObjectRef("Pod", f"server-{i}"))
                for i in range(2)
            ]
        return Answer(body={}, values=values, trace=trace)


def _explain_document() -> dict[str, Any]:
    provider: Any = _FakeProvider()
    typed: MetricsProvider = provider
    return asyncio.run(explain_hpa(typed, _FakeKube(), "default", "server"))


def test_hpa_cards_draw_an_explain_document(adapter_url: str, browser: Any) -> None:
    doc = _explain_document()
    # ceil(12 / 5) = 3 and ceil(6 / 4 × 2) = 3: the page must show what explain decided.
    assert doc["decision"]["desiredReplicas"] == 3
    # Standalone there is no Kubernetes: the page's fetch of /debug/hpa gets this document.
    stub = (
        "const realFetch = window.fetch.bind(window);"
        f"const explained = {json.dumps(doc)};"
        "window.fetch = (url, init) => String(url).startsWith('/debug/hpa/')"
        " ? Promise.resolve(new Response(JSON.stringify(explained),"
        " {status: 200, headers: {'Content-Type': 'application/json'}}))"
        " : realFetch(url, init);"
    )
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": stub})
    browser.get(adapter_url + "/debug/ui?namespace=default&hpa=default/server")
    wait_until("three polls", lambda: _ticks(browser) >= 3, timeout_s=_PAGE_S)
    assert browser.find_element("id", "errors").text == ""
    cards = _cards(browser, "hpa-list")
    titles = [c["title"] for c in cards]
    assert titles == [
        "HPA default/server: replicas",
        "HPA default/server: External jetstream_prefill_backlog_size vs target",
        "HPA default/server: Pods jetstream_prefill_backlog_size vs target",
    ]
    replicas, external, pods = cards
    assert "explain: desired 3" in replicas["legend"]
    assert "controller: status.desiredReplicas 3" in replicas["legend"]
    assert "not seen:" in replicas["legend"]
    # Three lines (explain, current, controller) of one point per poll.
    assert replicas["points"] >= 3 * 3
    assert "current 6" in external["legend"] and "target 5" in external["legend"]
    assert "current 6" in pods["legend"] and "target 4" in pods["legend"]
    # Each metric's freshness budget: read from the pods, a step waits for one 15 s sync.
    for card in (external, pods):
        assert "from scrape" in card["legend"] and "HPA sync 15s" in card["legend"], card
        assert "~7.5s (at worst 16s)" in card["legend"], card
    assert all(c["points"] >= 2 * 3 for c in (external, pods)), cards
    print(f"screenshot: {_screenshot(browser, 'hpa')}")
    assert _console_errors(browser) == []
