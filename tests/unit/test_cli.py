"""The command line: flags generated from the settings description, and commands that close
every backend they open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import adapter.backends.factory
import adapter.kube
import adapter.observability.logging
import adapter.serving.server
from adapter import cli
from adapter.backends.base import Backend
from adapter.domain.errors import NotFoundError
from adapter.domain.models import Requirement
from adapter.settings import Settings, options
from sim.fake_backend import FakeBackend
from tests.support.metadata import MetadataServer

COMMANDS = typer.main.get_command(cli.app).commands  # type: ignore[attr-defined]
SERVE_FLAGS = {p.opts[0]: p for p in COMMANDS["serve"].params}
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/jetstream_prefill_backlog_size"


@pytest.mark.parametrize("option", [o for o in options() if o.has_flag], ids=lambda o: o.flag)
def test_serve_flag_is_the_settings_description(option: Any) -> None:
    param = SERVE_FLAGS[option.flag]
    assert param.envvar == option.env
    assert param.default == option.flag_default
    assert param.help == option.help


def test_serve_has_a_flag_for_every_described_setting_and_no_other() -> None:
    described = {o.flag for o in options() if o.has_flag}
    assert set(SERVE_FLAGS) - {"--help"} == described


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """What ``serve`` would run with: the settings, captured instead of serving."""
    seen: list[Settings] = []

    async def run_adapter(settings: Settings, *, backend: Backend, **_: Any) -> None:
        seen.append(settings)
        await backend.aclose()

    monkeypatch.setattr(adapter.serving.server, "run_adapter", run_adapter)
    monkeypatch.setattr(adapter.observability.logging, "configure_logging", lambda **_: None)
    return seen


def _serve(args: Sequence[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.app, ["serve", *args], env=env)


def test_serve_flags_become_grouped_settings(served: list[Settings]) -> None:
    result = _serve(["--standalone", "--cache-ttl", "2", "--circuit-cooldown", "90"])
    assert result.exit_code == 0, result.output
    [settings] = served
    assert (settings.serving.host, settings.serving.port) == ("127.0.0.1", 8080)
    assert settings.cache.ttl == 2.0
    assert settings.resilience.circuit_max_cooldown == 90.0  # at least the cool-down


def test_prometheus_header_environment_variable_holds_one_header_per_line(
    served: list[Settings],
) -> None:
    env = {"LMA_PROMETHEUS_HEADER": "X-Scope-OrgID: team a\nAuthorization: Bearer t\n"}
    assert _serve(["--standalone"], env=env).exit_code == 0
    flags = ["--standalone", "--prometheus-header", "X-Other: 1"]
    assert _serve(flags, env=env).exit_code == 0
    assert [s.backend.prometheus_headers for s in served] == [
        {"X-Scope-OrgID": "team a", "Authorization": "Bearer t"},
        {"X-Other": "1"},  # the flag wins over the environment
    ]


class Recording(FakeBackend):
    """A fake backend that counts its closings."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.closes = 0

    async def aclose(self) -> None:
        self.closes += 1
        await super().aclose()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Recording]:
    """Every backend the commands build from their settings (PromQL and Cloud Monitoring)."""
    built: list[Recording] = []

    def build(name: str) -> Any:
        def factory(*_: Any, **__: Any) -> Recording:
            built.append(Recording(name))
            return built[-1]

        return factory

    monkeypatch.setattr(adapter.backends.factory, "build_backend", build("prometheus"))
    monkeypatch.setattr(
        adapter.backends.factory, "build_cloud_monitoring_backend", build("cloud-monitoring")
    )
    return built


# Stackdriver-style names through Cloud Monitoring: a second backend to close.
WITH_CLOUD_MONITORING = {
    "stackdriver_names": "cloud-monitoring",
    "cloud_monitoring_project": "p",
    "cloud_monitoring_location": "us-central2",
    "cluster": "c1",
    "standalone": True,
}


async def test_query_closes_every_backend_it_opens(opened: list[Recording]) -> None:
    settings = Settings.from_options(**WITH_CLOUD_MONITORING)
    body = await cli.answer_path(settings, PATH, explain=True)
    assert body["answer"]["kind"] == "ExternalMetricValueList"
    with pytest.raises(NotFoundError):
        await cli.answer_path(settings, PATH + "_unknown", explain=False)
    assert [(b.name, b.closes) for b in opened] == [("prometheus", 1), ("cloud-monitoring", 1)] * 2


class Kube:
    """The Kubernetes client of ``explain``: it knows no HPA."""

    closed = False

    async def check_reachable(self) -> None:
        pass

    async def read_hpa(self, namespace: str, name: str) -> dict[str, Any]:
        raise NotFoundError(f"horizontalpodautoscalers {namespace}/{name} not found")

    async def read_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        raise AssertionError("not reached")

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        raise AssertionError("not reached")

    def close(self) -> None:
        self.closed = True


class Objects:
    """The object cache of ``explain``, empty."""

    def __init__(self, kube: Kube) -> None:
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    async def wait_ready(self, timeout: float) -> bool:
        return True

    async def names(
        self, resource: Any, namespace: str | None, selector: Sequence[Requirement]
    ) -> tuple[str, ...] | None:
        return ()

    def status(self) -> dict[str, Any]:
        return {}


async def test_explain_closes_every_backend_and_the_kubernetes_side(
    monkeypatch: pytest.MonkeyPatch, opened: list[Recording]
) -> None:
    kube = Kube()
    caches: list[Objects] = []

    def object_cache(client: Kube) -> Objects:
        caches.append(Objects(client))
        return caches[-1]

    monkeypatch.setattr(adapter.kube.KubeClient, "connect", lambda *_, **__: kube)
    monkeypatch.setattr(adapter.kube, "ObjectCache", object_cache)
    settings = Settings.from_options(**WITH_CLOUD_MONITORING)
    with pytest.raises(NotFoundError):
        await cli.explain_target(
            settings, "default", "server", tolerance=0.1, downscale_stabilization=300.0
        )
    assert [(b.name, b.closes) for b in opened] == [("prometheus", 1), ("cloud-monitoring", 1)]
    assert kube.closed
    assert [(c.started, c.stopped) for c in caches] == [(True, True)]


# -- on a workstation -----------------------------------------------------------------------

_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://127.0.0.1:%d"}
users:
- name: me
  user: {token: not-a-real-token}
contexts:
- name: lab
  context: {cluster: lab, user: me}
- name: other
  context: {cluster: lab, user: me}
current-context: lab
"""


def _refused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_explain_outside_a_cluster_uses_kubeconfig_and_an_unreachable_apiserver_is_one_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(_KUBECONFIG % _refused_port())
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for extra in ([], ["--context", "other"]):
        result = CliRunner().invoke(cli.app, ["explain", "default/h", "--cluster", "c1", *extra])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        assert "reaching the Kubernetes API: cannot reach 127.0.0.1:" in lines[0]
        assert "Traceback" not in result.output and "MaxRetryError" not in result.output
    result = CliRunner().invoke(
        cli.app, ["explain", "default/h", "--cluster", "c1", "--context", "missing"]
    )
    assert result.exit_code == 1 and "cannot use kubeconfig" in result.output


def test_explain_without_any_kubeconfig_says_what_to_pass(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(cli.app, ["explain", "default/h", "--cluster", "c1"])
    assert result.exit_code == 1
    assert "no kubeconfig found ($KUBECONFIG, ~/.kube/config): pass --kubeconfig" in result.output


@pytest.mark.parametrize("command", ["query", "explain"])
def test_workstation_commands_take_the_backend_flags(command: str) -> None:
    flags = {p.opts[0] for p in COMMANDS[command].params}
    for flag in (
        "--prometheus-url",
        "--prometheus-bearer-token-file",
        "--prometheus-ca-file",
        "--prometheus-header",
        "--gmp-project",
        "--cluster",
        "--all-clusters",
        "--config",
    ):
        assert flag in flags, f"{command} lacks {flag}"


def test_check_config_reports_what_will_fail_at_request_time(tmp_path: Any) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        """rules:
- seriesQuery: '{__name__=~"jetstream_.*",namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)$", as: "${1}"}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
externalRules:
- seriesQuery: 'memory_used'
  resources: {template: <<.Resource>>}
  name: {matches: "", as: "memory_used_percentage"}
  metricsQuery: sum(memory_used{cluster="lab",exported_namespace="default"})
"""
    )
    plain = CliRunner().invoke(cli.app, ["check-config", str(rules)])
    assert plain.exit_code == 0, plain.output
    assert "will fail: pins exported_namespace='default'" in plain.output
    assert "cluster 'prod'" not in plain.output and "GMP" not in plain.output
    asked = CliRunner().invoke(
        cli.app, ["check-config", str(rules), "--cluster", "prod", "--gmp-project", "p"]
    )
    assert asked.exit_code == 0, asked.output
    assert "scope: cluster='prod'" in asked.output
    assert "pins cluster='lab', but this adapter serves cluster 'prod'" in asked.output
    assert "not served under --gmp-project: GMP matches metric names exactly" in asked.output
    assert "request-time problem(s)" in asked.output


def test_check_config_says_which_source_each_rule_uses_with_scrape_pods(tmp_path: Any) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "metrics:\n"
        "- name: backlog\n"
        "  type: external\n"
        "  query: sum(jetstream_prefill_backlog_size)\n"
        "- name: busiest\n"
        "  type: external\n"
        "  query: sum(topk(1, jetstream_prefill_backlog_size))\n"
    )
    result = CliRunner().invoke(cli.app, ["check-config", str(rules)])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if "--scrape-pods" in line]
    assert lines[0] == "with --scrape-pods: the pods"
    assert lines[1].startswith("with --scrape-pods: backend (outside the local evaluator's subset")
    assert "topk" in lines[1]


def test_check_config_shows_the_scope_it_was_told(tmp_path: Any) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("metrics:\n- name: backlog\n  type: external\n  query: sum(x)\n")
    lines = {}
    for flags in ([], ["--cluster", "prod"], ["--all-clusters"]):
        result = CliRunner().invoke(cli.app, ["check-config", str(rules), *flags])
        assert result.exit_code == 0, result.output
        [scope] = [line for line in result.output.splitlines() if line.startswith("scope: ")]
        lines[" ".join(flags)] = scope
    assert lines == {
        "": "scope: no --cluster given (serve reads it from the GKE metadata server)",
        "--cluster prod": "scope: cluster='prod'",
        "--all-clusters": "scope: every cluster (--all-clusters)",
    }


# -- scoped as serve is ---------------------------------------------------------------------


def _metadata_at(url: str) -> list[str]:
    return ["--google-endpoints", f"metadata={url}"]


def _one_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return str(lines[0])


@pytest.fixture
def no_kube(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``explain``'s Kubernetes side, which must not be reached: each connection is recorded."""
    connected: list[str] = []

    def connect(*_: Any, **__: Any) -> Any:
        connected.append("connect")
        raise AssertionError("explain connected to Kubernetes before its scope was known")

    monkeypatch.setattr(adapter.kube.KubeClient, "connect", connect)
    return connected


@pytest.mark.parametrize("command", [["query", PATH], ["explain", "default/h"]])
def test_without_a_cluster_query_and_explain_refuse_as_serve_does(
    command: list[str], opened: list[Recording], no_kube: list[str]
) -> None:
    refused = f"http://127.0.0.1:{_refused_port()}"
    with MetadataServer(cluster=None) as plain_vm:  # a GCE VM, not a GKE node
        for where in (refused, plain_vm.url):
            result = CliRunner().invoke(cli.app, [*command, *_metadata_at(where)])
            assert result.exit_code == 1, result.output
            line = _one_line(result)
            assert line.startswith("error: no cluster name: pass --cluster=NAME"), line
            assert "or --all-clusters to read every cluster's series on purpose" in line
    assert "/computeMetadata/v1/instance/attributes/cluster-name" in plain_vm.requests
    assert opened == [] and no_kube == []  # no cluster's series read, nothing connected


def test_query_is_scoped_to_the_cluster_the_metadata_server_names(
    opened: list[Recording],
) -> None:
    with MetadataServer(cluster="serving-1") as metadata:
        result = CliRunner().invoke(
            cli.app, ["query", PATH, "--explain", *_metadata_at(metadata.url)]
        )
    assert result.exit_code == 0, result.output
    [backend] = opened
    assert backend.queries and all('cluster="serving-1"' in q for q in backend.queries)


def test_all_clusters_is_explicit_for_query_and_explain(
    opened: list[Recording], monkeypatch: pytest.MonkeyPatch
) -> None:
    with MetadataServer(cluster="serving-1") as metadata:
        result = CliRunner().invoke(
            cli.app, ["query", PATH, "--all-clusters", *_metadata_at(metadata.url)]
        )
        assert result.exit_code == 0, result.output
        both = CliRunner().invoke(cli.app, ["query", PATH, "--all-clusters", "--cluster", "c1"])
        assert both.exit_code == 1 and "give --cluster or --all-clusters, not both" in both.output
    assert metadata.requests == []
    [backend] = opened
    assert backend.queries and not any("cluster=" in q for q in backend.queries)
    # explain: past the scope to the (empty) cluster, where the HPA is not found.
    monkeypatch.setattr(adapter.kube.KubeClient, "connect", lambda *_, **__: Kube())
    monkeypatch.setattr(adapter.kube, "ObjectCache", Objects)
    result = CliRunner().invoke(cli.app, ["explain", "default/h", "--all-clusters"])
    assert result.exit_code == 1 and "404 NotFound" in _one_line(result)


@pytest.mark.parametrize("command", [["query", PATH], ["explain", "default/h"]])
def test_an_unreachable_backend_is_one_line_and_exit_code_1(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # explain reaches the cluster (an empty one) first; then the backend does not answer.
    monkeypatch.setattr(adapter.kube.KubeClient, "connect", lambda *_, **__: Kube())
    monkeypatch.setattr(adapter.kube, "ObjectCache", Objects)
    port = _refused_port()
    result = CliRunner().invoke(
        cli.app,
        [*command, "--cluster", "c1", "--prometheus-url", f"http://127.0.0.1:{port}"],
    )
    assert result.exit_code == 1, result.output
    line = _one_line(result)
    assert line.startswith("error (503 ServiceUnavailable): prometheus: "), line
    assert "cannot connect" in line, line


def test_the_configuration_doc_states_the_workstation_commands_scope() -> None:
    from pathlib import Path

    doc = " ".join(
        (Path(cli.__file__).parents[1] / "docs" / "configuration.md").read_text().split()
    )
    assert "`query` and `explain` accept the backend, rules and scope flags too" in doc
    assert "(`error: no cluster name: pass --cluster=NAME …`, exit code 1)" in doc
    assert "A backend or API server that does not answer is one line and exit code 1" in doc
    for command in ("query", "explain"):
        flags = {o for p in COMMANDS[command].params for o in p.opts}
        assert {"--cluster", "--all-clusters"} <= flags, command
