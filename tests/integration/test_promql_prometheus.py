"""adapter.promql against a real Prometheus: its escapes decode to exactly the original text.

Starts ``/usr/bin/prometheus`` (no scrape targets, temporary storage, a free loopback port) once
for the module. The unit tests compare with ``promql_parser``; this is the ground truth the
backends will talk to.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapter.domain.models import Matcher, Requirement
from adapter.promql import (
    escape_regex,
    escape_string,
    inject,
    render_matchers,
    requirements_to_matchers,
)
from tests.support.ports import free_port

PROMETHEUS = "/usr/bin/prometheus"
_START_TIMEOUT = 30.0
_HTTP_TIMEOUT = 5.0
_EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which(PROMETHEUS) is None:
        pytest.fail(f"{PROMETHEUS} is missing: install it with `apt-get install prometheus`")
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text("global: {}\nscrape_configs: []\n")
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}; see {log.name}")
            try:
                if _get(url + "/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after {_START_TIMEOUT}s; see {log.name}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _query(url: str, query: str) -> dict[str, object]:
    status, body = _get(url + "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    answer = json.loads(body)
    assert status == 200, (query, answer)
    assert answer["status"] == "success", (query, answer)
    data = answer["data"]
    assert isinstance(data, dict)
    return data


def _vector_labels(url: str, query: str) -> list[dict[str, str]]:
    data = _query(url, query)
    assert data["resultType"] == "vector"
    result = data["result"]
    assert isinstance(result, list)
    return [item["metric"] for item in result]


_HARD = ['"', "\\", "\n", "\r\t\a\b\f\v", "\x00\x1f\x7f", "\u00a0\u2028\ufeff\ufffe", "\U0010ffff"]


@_EXAMPLES
@given(value=st.text(max_size=30))
@example(value="".join(_HARD))
@example(value='a"} or vector(1) # \\')
def test_prometheus_decodes_escape_string_exactly(prometheus_url: str, value: str) -> None:
    data = _query(prometheus_url, escape_string(value))
    assert data["resultType"] == "string"
    result = data["result"]
    assert isinstance(result, list)
    assert result[1] == value


@_EXAMPLES
@given(value=st.text(max_size=30))
def test_prometheus_matches_escape_regex_literally(prometheus_url: str, value: str) -> None:
    # label_join with two absent source labels sets ``src`` to exactly the separator.
    pattern = escape_string(escape_regex(value))

    def matches(src: str) -> bool:
        query = (
            f'label_replace(label_join(vector(1), "src", {escape_string(src)}, "x", "x"),'
            f' "verdict", "match", "src", {pattern})'
        )
        (labels,) = _vector_labels(prometheus_url, query)
        return labels.get("verdict") == "match"

    assert matches(value)
    assert not matches(value + "x")
    assert not matches("x" + value)


@_EXAMPLES
@given(value=st.text(max_size=30))
def test_prometheus_reads_injected_matchers_back(prometheus_url: str, value: str) -> None:
    # absent_over_time() answers with the labels of its selector's equality matchers: what
    # Prometheus understood the injected value to be.
    base = 'absent_over_time(nonexistent_metric{job="x"}[5m] offset 1m)'
    query = inject(base, [Matcher("ns", "=", value)])
    (labels,) = _vector_labels(prometheus_url, query)
    assert labels.get("ns", "") == value
    assert labels["job"] == "x"


def test_prometheus_accepts_translated_selectors(prometheus_url: str) -> None:
    reqs = [
        Requirement("app", "=", ('we"b\\',)),
        Requirement("tier", "in", ("a.b", "c|d", "(e)")),
        Requirement("zone", "notin", ("$x^",)),
        Requirement("model", "exists"),
        Requirement("legacy", "!"),
    ]
    matchers = requirements_to_matchers(reqs)
    query = f"absent(nonexistent_metric{{{render_matchers(matchers)}}})"
    (labels,) = _vector_labels(prometheus_url, query)
    # Only equality matchers with a non-empty value become labels of absent()'s answer.
    assert labels == {"app": 'we"b\\'}
