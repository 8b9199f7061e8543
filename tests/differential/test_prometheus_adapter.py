"""prometheus-adapter v0.12.0 and this adapter, side by side: same Prometheus, same cluster,
same rules file, same requests, directly over HTTPS; every answer pair compared.

Rules files: prometheus-adapter v0.12.0's docs/sample-config.yaml (verbatim in
tests/unit/fixtures/rules/sample-config.yaml; both adapters refuse it as it is, so it is compared
with its quoting repaired), the rule of its docs/walkthrough.md verbatim (walkthrough-doc.yaml:
``irate``, ``<<.Resource>>``), the walkthrough and configuration examples rewritten as one file
(walkthrough.yaml), its Helm chart's default rules (rendered by deploy/chart with
``rules.default: true``), and the GKE guide's values file (rendered by the chart,
``CLUSTER_NAME`` filled in). Requests: discovery, a pods metric for ``*``, by name and with a
``labelSelector``, object metrics (namespace, Deployment, Service, the sample config's Brand
override), ``jobs.batch``, ``leases.coordination.k8s.io``, ``nodes`` and a CRD's objects for
``*`` with label selectors, by name and for an object that does not exist, external metrics, a
missing metric, a selector that matches no object.

Compared: status code, ``kind``, the described objects, metric names, the metric selector echoed
in each item, ``windowSeconds`` (absent in both: a prometheus-adapter rule knows no window) and
values (within one milli-unit: the rounding of a quantity). :data:`KNOWN` lists the only differences allowed, each with
the section of docs/migration.md that explains it; anything else fails with a readable diff.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import yaml

from tests.differential.peers import (
    RUNS,
    Answer,
    Peer,
    Setup,
    ours_refusal,
    peer_binary,
    start_ours,
    start_theirs,
    theirs_refusal,
)
from tests.differential.world import (
    CLUSTER,
    INF_SERVICE,
    NAN_SERVICE,
    NS,
    OTHERS,
    SUCCEEDED,
    World,
    open_world,
)
from tests.e2e.scenario import ADAPTER_USER, apply_base_rbac
from tests.support import REPO
from tests.support.controlplane import ControlPlane
from tests.support.manifests import helm_template
from tests.support.seed import parse_quantity
from tests.support.waiting import wait_until

C1 = "/apis/custom.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
E1 = "/apis/external.metrics.k8s.io/v1beta1"
MIGRATION = REPO / "docs" / "migration.md"
_READY_S = 90.0


# --------------------------------------------------------------------------- rules files


@dataclass(frozen=True)
class RulesFile:
    """A rules file and the metrics to ask both adapters for.

    ``objects``: (resource path, object name, metric) under the namespace (``""`` resource: the
    namespace itself, ``…/namespaces/<ns>/metrics/<metric>``). ``selected``: (series label of
    :data:`~tests.differential.world.OTHERS`, metric) asked for ``*`` with label selectors, by
    name and for an object that does not exist. ``ready``: a discovery entry both must list
    before the comparison starts.
    """

    name: str
    pods: tuple[str, ...] = ()
    objects: tuple[tuple[str, str, str], ...] = ()
    external: tuple[str, ...] = ()
    labelled: tuple[str, ...] = ()
    selected: tuple[tuple[str, str], ...] = ()
    ready: str = ""


_OTHERS = (
    ("job", "train_steps"),
    ("lease", "lease_renewals"),
    ("node", "node_work"),
    ("brand", "cheddar_sold"),
)

RULES_FILES = (
    RulesFile(
        "sample-config",
        pods=("cpu_usage", "fs_writes", "http_requests"),
        objects=(
            ("brands.cheese.io", "gouda", "cheesy_goodness"),
            ("brands.cheese.io", "brie", "cheesy_goodness"),
        ),
        external=("queue_consumer_lag", "queue_depth"),
        labelled=("queue_consumer_lag",),
        selected=_OTHERS,
        ready="pods/cpu_usage",
    ),
    RulesFile(
        "walkthrough-doc",
        pods=("http_requests",),
        selected=_OTHERS,
        ready="pods/http_requests",
    ),
    RulesFile(
        "walkthrough",
        pods=("http_requests_per_second",),
        objects=(("deployments.apps", "web", "queue_depth"), ("", NS, "queue_depth")),
        external=("queue_consumer_lag", "queue_depth"),
        labelled=("queue_consumer_lag",),
        ready="pods/http_requests_per_second",
    ),
    RulesFile(
        "chart-defaults",
        pods=(
            "cpu_usage",
            "fs_writes",
            "memory_working_set_bytes",
            "http_requests",
            "request_duration",
            "jetstream_prefill_backlog_size",
            "jetstream_slots_used_percentage",
        ),
        objects=(
            ("deployments.apps", "web", "queue_depth"),
            ("services", "web", "inference_queue_size"),
            ("services", NAN_SERVICE, "inference_queue_size"),
            ("services", INF_SERVICE, "inference_queue_size"),
            ("", NS, "http_requests"),
        ),
        external=("jetstream_prefill_backlog_size",),
        selected=_OTHERS,
        ready="pods/cpu_usage",
    ),
    RulesFile(
        "gke-guide",
        pods=("jetstream_prefill_backlog_size",),
        external=(
            "jetstream_prefill_backlog_size",
            "jetstream_slots_used_percentage",
            "memory_used_percentage",
        ),
        ready="external:jetstream_prefill_backlog_size",
    ),
)


def _chart_rules(values: dict[str, Any]) -> str:
    """The rules file deploy/chart renders into its ConfigMap for ``values``."""
    objects = helm_template(values)
    assert isinstance(objects, list)
    [config] = [o for o in objects if o["kind"] == "ConfigMap" and "rules.yaml" in o["data"]]
    text: str = config["data"]["rules.yaml"]
    return text


FIXTURES = REPO / "tests" / "unit" / "fixtures" / "rules"
SAMPLE_CONFIG = FIXTURES / "sample-config.yaml"
"""prometheus-adapter v0.12.0's docs/sample-config.yaml, verbatim: invalid YAML (a double-quoted
metricsQuery holds ``"POD"``), which prometheus-adapter refuses too; compared once repaired."""
_QUOTED_QUERY = re.compile(r'^(?P<key>\s*metricsQuery: )"(?P<query>.*)"$')


def repaired(text: str) -> str:
    """``text`` with each double-quoted metricsQuery that holds a ``"`` single-quoted instead
    (the only change a user of the sample config has to make)."""
    lines = []
    for line in text.splitlines():
        match = _QUOTED_QUERY.match(line)
        if match and '"' in match["query"]:
            query = match["query"].replace("'", "''")
            line = f"{match['key']}'{query}'"
        lines.append(line)
    return "\n".join(lines) + "\n"


def scoped(text: str) -> str:
    """``text`` with every external rule that maps no label to namespaces given the
    ``namespace`` label (``resources.overrides``): this adapter refuses such a rule at load,
    prometheus-adapter loads it and fails each request for it (see
    :func:`test_an_external_rule_without_a_namespace_label`)."""
    doc = yaml.safe_load(text)
    for rule in doc.get("externalRules") or []:
        rule.setdefault("resources", {"overrides": {"namespace": {"resource": "namespace"}}})
    return yaml.safe_dump(doc, sort_keys=False)


def rules_text(name: str) -> str:
    if name in ("walkthrough", "walkthrough-doc"):
        return (FIXTURES / f"{name}.yaml").read_text()
    if name == "sample-config":
        return scoped(repaired(SAMPLE_CONFIG.read_text()))
    if name == "chart-defaults":
        return _chart_rules({"rules": {"default": True}})
    guide = (REPO / "tests" / "fixtures" / "gke-guide-values.yaml").read_text()
    return _chart_rules(yaml.safe_load(guide.replace("CLUSTER_NAME", CLUSTER)))


def requests_for(rules: RulesFile) -> list[str]:
    """Every request sent to both adapters for ``rules``."""
    ns = f"namespaces/{NS}"
    out = [C1, C2, E1]
    for metric in rules.pods:
        out += [
            f"{C2}/{ns}/pods/*/{metric}",
            f"{C1}/{ns}/pods/*/{metric}",
            f"{C2}/{ns}/pods/web-1/{metric}",
            f"{C2}/{ns}/pods/{SUCCEEDED}/{metric}",
            f"{C2}/{ns}/pods/*/{metric}?labelSelector={quote('app=web')}",
            f"{C2}/{ns}/pods/*/{metric}?labelSelector={quote('app in (web,db)')}",
            f"{C2}/{ns}/pods/*/{metric}?labelSelector={quote('app=nomatch')}",
            f"{C2}/{ns}/pods/*/{metric}?metricLabelSelector={quote('id!=web-1')}",
            f"{C2}/{ns}/pods/*/{metric}?metricLabelSelector={quote('id=web-2')}",
        ]
    for resource, name, metric in rules.objects:
        if resource:
            out += [f"{C2}/{ns}/{resource}/{name}/{metric}", f"{C2}/{ns}/{resource}/*/{metric}"]
        else:
            out.append(f"{C2}/{ns}/metrics/{metric}")
    for metric in rules.external:
        out += [f"{E1}/{ns}/{metric}", f"{E1}/namespaces/default/{metric}"]
    for metric in rules.labelled:
        out += [
            f"{E1}/{ns}/{metric}?labelSelector={quote('name=orders')}",
            f"{E1}/{ns}/{metric}?labelSelector={quote('name in (orders)')}",
            f"{E1}/{ns}/{metric}?labelSelector={quote('name!=orders')}",
            f"{E1}/{ns}/{metric}?labelSelector={quote('name in (orders.v2)')}",
            f"{E1}/{ns}/{metric}?labelSelector={quote('name in (orders.v2,invoices)')}",
        ]
    for label, metric in rules.selected:
        resource, _, objects = OTHERS[label]
        base = f"{C2}/{resource}" if label == "node" else f"{C2}/{ns}/{resource}"
        out += [f"{base}/*/{metric}", f"{base}/{next(iter(objects))}/{metric}"]
        out.append(f"{base}/{label}-ghost/{metric}")
        for selector in ("pool=a", "pool in (a,b)", "pool!=a", "pool=c"):
            out.append(f"{base}/*/{metric}?labelSelector={quote(selector)}")
    out += [
        f"{C2}/{ns}/pods/*/no_such_metric",
        f"{C2}/{ns}/pods/web-1/no_such_metric",
        f"{E1}/{ns}/no_such_metric",
    ]
    return out


# --------------------------------------------------------------------------- answers compared


def _value(text: str) -> float:
    return parse_quantity(text)


def _metric_selector(item: dict[str, Any]) -> Any:
    """The item's metric selector (v1beta2: ``metric.selector``; v1beta1: ``selector``), absent
    and ``null`` alike: the metricLabelSelector echoed back."""
    if "metric" in item:
        return (item["metric"] or {}).get("selector")
    return item.get("selector")


def _window(item: dict[str, Any]) -> Any:
    """``windowSeconds`` (custom v1beta2) or ``window`` (v1beta1, external); absent: ``None``."""
    return item.get("windowSeconds", item.get("window"))


def _distinct(values: Iterator[Any]) -> list[str]:
    return sorted({json.dumps(v, sort_keys=True) for v in values})


def summary(answer: Answer) -> dict[str, Any]:
    """What is compared of an answer: status, kind and, by kind, its resources or items (values
    apart, in ``values``: compared within rounding)."""
    body = answer.body
    kind = body.get("kind")
    out: dict[str, Any] = {"status": answer.status, "kind": kind}
    if kind == "APIResourceList":
        out["resources"] = sorted(
            (r["name"], r.get("namespaced"), r.get("kind")) for r in body.get("resources", [])
        )
    elif kind == "MetricValueList":
        items = {}
        for item in body.get("items", []):
            obj = item["describedObject"]
            key = json.dumps(
                [
                    obj.get("kind"),
                    obj.get("namespace"),
                    obj.get("name"),
                    obj.get("apiVersion"),
                    item.get("metric", {}).get("name", item.get("metricName")),
                ]
            )
            items[key] = _value(item["value"])
        out["objects"] = sorted(items)
        out["values"] = items
        out["selectors"] = _distinct(_metric_selector(item) for item in body.get("items", []))
        out["windows"] = _distinct(_window(item) for item in body.get("items", []))
    elif kind == "ExternalMetricValueList":
        items = {}
        for item in body.get("items", []):
            key = json.dumps([item["metricName"], item.get("metricLabels", {})], sort_keys=True)
            items[key] = _value(item["value"])
        out["objects"] = sorted(items)
        out["values"] = items
        out["windows"] = _distinct(_window(item) for item in body.get("items", []))
    elif kind == "Status":
        out["reason"] = body.get("reason")
    else:
        out["body"] = body
    return out


_MILLI = 1e-3
"""A quantity's resolution: prometheus-adapter truncates to milli-units (0.4499… → 449m), this
adapter rounds (450m), so the two differ by at most one milli-unit."""


def _slack(a: float, b: float) -> float:
    """One milli-unit, plus the float error of parsing two quantities (``0.45 - 0.449`` is
    ``0.0010000000000000009``): a few ulps of the larger value, nothing relative beyond that."""
    return _MILLI + 8 * sys.float_info.epsilon * max(abs(a), abs(b), 1.0)


def _close(a: float, b: float) -> bool:
    # A value that moves between the two requests is asked again (_values_move_alike).
    return abs(a - b) <= _slack(a, b)


def differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Readable lines for every compared field that differs; empty when they agree."""
    lines = []
    for key in sorted(set(theirs) | set(ours)):
        if key == "values":
            continue
        if theirs.get(key) != ours.get(key):
            lines.append(
                f"  {key}: prometheus-adapter {theirs.get(key)!r}\n"
                f"  {' ' * len(key)}  llm-metrics-adapter {ours.get(key)!r}"
            )
    if not lines:
        for item, value in theirs.get("values", {}).items():
            mine = ours["values"][item]
            if not _close(value, mine):
                lines.append(f"  value of {item}: prometheus-adapter {value}, ours {mine}")
    return lines


# --------------------------------------------------------------------------- known differences


Summary = dict[str, Any]
Ask = Callable[[str], Summary]
"""prometheus-adapter's answer summary for another request."""


@dataclass(frozen=True)
class Known:
    """A documented difference: ``applies`` to prometheus-adapter's answer summary for a request
    path; ``expected(path, theirs, ask)`` is the answer this adapter gives instead, derived from
    prometheus-adapter's (``ask`` asks it for an equivalent request). ``section``: the heading in
    docs/migration.md that explains it."""

    name: str
    section: str
    applies: Callable[[str, Summary], bool]
    expected: Callable[[str, Summary, Ask], Summary]


def _is_list(theirs: Summary, kind: str = "MetricValueList") -> bool:
    return bool(theirs["kind"] == kind)


def _core_api_version(path: str, theirs: Summary, ask: Ask) -> Summary:
    fixed = {}
    for key, value in theirs["values"].items():
        kind, ns, name, version, metric = json.loads(key)
        fixed[json.dumps([kind, ns, name, "v1" if version == "/v1" else version, metric])] = value
    return {**theirs, "values": fixed, "objects": sorted(fixed)}


def _has_core_slash_v1(path: str, theirs: Summary) -> bool:
    return _is_list(theirs) and any(json.loads(key)[3] == "/v1" for key in theirs["values"])


def _group_not_installed(path: str, theirs: Summary) -> bool:
    # prometheus-adapter installs an API group only when the file has rules for it: without
    # any, the request falls through to its root handler (a 404 listing its paths).
    return theirs["status"] == 404 and theirs["kind"] is None and "paths" in theirs["body"]


_NOT_FOUND: Summary = {"status": 404, "kind": "Status", "reason": "NotFound"}


def _served_empty(path: str, theirs: Summary, ask: Ask) -> Summary:
    if path in (C1, C2, E1):
        return {"status": 200, "kind": "APIResourceList", "resources": []}
    return _NOT_FOUND


_PINNED = re.compile(rf"^{E1}/namespaces/(?!default/)[^/]+/memory_used_percentage$")


def _pinned_elsewhere(path: str, theirs: Summary) -> bool:
    # The GKE guide's memory_used_percentage rule pins exported_namespace="default".
    return bool(_PINNED.match(path)) and _is_list(theirs, "ExternalMetricValueList")


def _describes(kind: str, name: str, *, lists_only: bool = False) -> Callable[[str, Summary], bool]:
    """Answers with an item for that object (``lists_only``: of ``<resource>/*`` requests)."""

    def applies(path: str, theirs: Summary) -> bool:
        if not _is_list(theirs) or (lists_only and "/*/" not in path):
            return False
        return any(json.loads(key)[:3:2] == [kind, name] for key in theirs["values"])

    return applies


def _keep(theirs: Summary, keep: Callable[[list[Any]], bool]) -> Summary:
    """``theirs`` with only the items whose decoded key ``keep`` accepts; a 404 when none is."""
    kept = {key: value for key, value in theirs["values"].items() if keep(json.loads(key))}
    if not kept:
        return _NOT_FOUND
    return {**theirs, "values": kept, "objects": sorted(kept)}


def _without(kind: str, name: str) -> Callable[[str, Summary, Ask], Summary]:
    """The answer without the items describing that object."""
    return lambda path, theirs, ask: _keep(theirs, lambda key: key[:3:2] != [kind, name])


_SET_SELECTOR = re.compile(r"^(?P<label>[\w.-]+) in \((?P<values>[^)]*)\)$")


def _set_selector(path: str) -> tuple[str, set[str]] | None:
    query = parse_qs(urlsplit(path).query).get("labelSelector", [""])[0]
    match = _SET_SELECTOR.match(query)
    if match is None:
        return None
    return match["label"], {v.strip() for v in match["values"].split(",")}


def _regex_in(path: str, theirs: Summary) -> bool:
    selector = _set_selector(path)
    if selector is None or not _is_list(theirs, "ExternalMetricValueList"):
        return False
    label, values = selector
    return any(json.loads(key)[1].get(label) not in values for key in theirs["values"])


def _exact_in(path: str, theirs: Summary, ask: Ask) -> Summary:
    selector = _set_selector(path)
    assert selector is not None
    label, values = selector
    return _keep(theirs, lambda key: key[1].get(label) in values)


def _not_equal_refused(path: str, theirs: Summary) -> bool:
    query = parse_qs(urlsplit(path).query).get("metricLabelSelector", [""])[0]
    return "!=" in query and theirs["status"] == 500


def _as_notin(path: str, theirs: Summary, ask: Ask) -> Summary:
    # `a!=b` selects what `a notin (b)` selects (objects without the label too), which
    # prometheus-adapter accepts: its answer to that is the answer to this.
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    label, _, value = query["metricLabelSelector"][0].partition("!=")
    query["metricLabelSelector"] = [f"{label} notin ({value})"]
    return ask(f"{parts.path}?{urlencode(query, doseq=True, quote_via=quote)}")


_NO_NAMESPACE_LABEL = frozenset({"brands.cheese.io/cheesy_goodness"})
"""Metrics on a namespaced resource whose rule maps no label to namespaces: the sample config's
``cheddar{sharp="true"}`` rule overrides ``brand`` only."""


def _lists_unscopable(path: str, theirs: Summary) -> bool:
    return _is_list(theirs, "APIResourceList") and any(
        name in _NO_NAMESPACE_LABEL for name, _, _ in theirs["resources"]
    )


def _without_unscopable(path: str, theirs: Summary, ask: Ask) -> Summary:
    kept = [r for r in theirs["resources"] if r[0] not in _NO_NAMESPACE_LABEL]
    return {**theirs, "resources": kept}


KNOWN: tuple[Known, ...] = (
    Known(
        "core objects' describedObject.apiVersion is v1, not /v1",
        "### describedObject.apiVersion of core objects",
        _has_core_slash_v1,
        _core_api_version,
    ),
    Known(
        "an API with no rules is served, empty",
        "### An API with no rules is served, empty",
        _group_not_installed,
        _served_empty,
    ),
    Known(
        "a rule pinned to another namespace answers 403 elsewhere",
        "### A rule pinned to one namespace answers only there",
        _pinned_elsewhere,
        lambda path, theirs, ask: {"status": 403, "kind": "Status", "reason": "Forbidden"},
    ),
    Known(
        "a pod that has completed is not counted",
        "### Completed pods are not counted",
        _describes("Pod", SUCCEEDED, lists_only=True),
        _without("Pod", SUCCEEDED),
    ),
    Known(
        "a NaN value is not served",
        "### NaN and infinite values are not served",
        _describes("Service", NAN_SERVICE),
        _without("Service", NAN_SERVICE),
    ),
    Known(
        "an infinite value is not served",
        "### NaN and infinite values are not served",
        _describes("Service", INF_SERVICE),
        _without("Service", INF_SERVICE),
    ),
    Known(
        "`in` matches the listed values exactly, not as a regex",
        "### Label selectors match values exactly",
        _regex_in,
        _exact_in,
    ),
    Known(
        "a namespaced resource's metric without a namespace label is not listed",
        "### A metric on a namespaced resource needs a namespace label",
        _lists_unscopable,
        _without_unscopable,
    ),
    Known(
        "`!=` in metricLabelSelector is answered, not a 500",
        "### `!=` in metricLabelSelector",
        _not_equal_refused,
        _as_notin,
    ),
)


# --------------------------------------------------------------------------- the run


@dataclass
class Pair:
    """The two adapters over one rules file, and what comparing them found."""

    rules: RulesFile
    theirs: Peer
    ours: Peer
    unexplained: list[str] = field(default_factory=list)
    explained: dict[str, set[str]] = field(default_factory=dict)
    compared: int = 0
    work: Path = Path()


def _listed(peer: Peer, entry: str) -> bool:
    path, name = (E1, entry.split(":", 1)[1]) if entry.startswith("external:") else (C2, entry)
    answer = peer.get(path)
    return answer.status == 200 and name in {r["name"] for r in answer.body.get("resources", [])}


def _bracketed(before: dict[str, Any], ours: dict[str, Any], after: dict[str, Any]) -> bool:
    """Every value of ours lies between prometheus-adapter's answers just before and just after
    it (a rate over a window longer than the series' age grows with every scrape)."""
    if before.get("objects") != after.get("objects") or set(before["values"]) != set(
        ours["values"]
    ):
        return False
    for item, value in ours["values"].items():
        low, high = sorted((before["values"][item], after["values"][item]))
        if not low - _slack(low, value) <= value <= high + _slack(high, value):
            return False
    return True


def _explained(pair: Pair, path: str, theirs: Summary) -> Summary:
    """prometheus-adapter's answer with every applicable known difference applied."""

    def ask(other: str) -> Summary:
        return _explained(pair, other, summary(pair.theirs.get(other)))

    for known in KNOWN:
        if known.applies(path, theirs):
            theirs = known.expected(path, theirs, ask)
            pair.explained.setdefault(known.name, set()).add(path)
    return theirs


def _values_move_alike(pair: Pair, path: str) -> bool:
    """Values only differ: ask again, prometheus-adapter just before and just after this adapter,
    up to three times; agree when ours lies between (a rate over a window longer than the
    series' age grows with every scrape)."""
    for _ in range(3):
        before = _explained(pair, path, summary(pair.theirs.get(path)))
        ours = summary(pair.ours.get(path))
        after = _explained(pair, path, summary(pair.theirs.get(path)))
        if _bracketed(before, ours, after):
            return True
    return False


def compare(pair: Pair, dump: Path) -> None:
    """Ask both for every request; keep the answers in ``dump`` (JSON lines) for a failure."""
    with dump.open("w") as sink:
        for path in requests_for(pair.rules):
            raw_theirs, raw_ours = pair.theirs.get(path), pair.ours.get(path)
            record = {"path": path, "theirs": raw_theirs.__dict__, "ours": raw_ours.__dict__}
            sink.write(json.dumps(record) + "\n")
            pair.compared += 1
            theirs = _explained(pair, path, summary(raw_theirs))
            diff = differences(theirs, summary(raw_ours))
            values_only = all(line.startswith("  value of") for line in diff)
            if diff and values_only and _values_move_alike(pair, path):
                continue
            if diff:
                pair.unexplained.append(f"GET {path}\n" + "\n".join(diff))


@pytest.fixture(scope="module")
def world(control_plane: ControlPlane) -> Iterator[World]:
    """The objects and the Prometheus every test of the module reads."""
    peer_binary()  # a missing build fails here, before anything starts
    with open_world(control_plane) as opened:
        yield opened


@pytest.fixture(scope="module")
def pairs(
    control_plane: ControlPlane, world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Pair]]:
    """Both adapters for every rules file, started together, compared once."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        out = {}
        for rules in RULES_FILES:
            work = tmp_path_factory.mktemp(rules.name)
            path = work / "rules.yaml"
            path.write_text(rules_text(rules.name))
            setup = Setup(control_plane, world.prometheus.url, path, work)
            theirs = stack.enter_context(start_theirs(setup))
            ours = stack.enter_context(start_ours(setup))
            out[rules.name] = Pair(rules, theirs, ours, work=work)
        for pair in out.values():
            for peer in (pair.theirs, pair.ours):
                wait_until(
                    f"{peer.name} to list {pair.rules.ready} ({pair.rules.name})",
                    functools.partial(_listed, peer, pair.rules.ready),
                    timeout_s=_READY_S,
                    details=peer.tail,
                )
        for pair in out.values():
            compare(pair, pair.work / "answers.jsonl")
        RUNS.append((sum(p.compared for p in out.values()), time.monotonic() - started))
        yield out


@pytest.mark.parametrize("name", [r.name for r in RULES_FILES])
def test_prometheus_adapter_and_this_adapter_answer_alike(
    pairs: dict[str, Pair], name: str
) -> None:
    pair = pairs[name]
    assert pair.compared == len(requests_for(pair.rules))
    assert not pair.unexplained, (
        f"{len(pair.unexplained)} of {pair.compared} answers differ from prometheus-adapter's "
        f"for the {name} rules, and no documented difference explains them:\n\n"
        + "\n\n".join(pair.unexplained)
    )


def test_every_known_difference_is_seen_and_documented(pairs: dict[str, Pair]) -> None:
    headings = set(re.findall(r"^#+ .*$", MIGRATION.read_text(), flags=re.MULTILINE))
    seen = {name for pair in pairs.values() for name in pair.explained}
    for known in KNOWN:
        assert known.section in headings, f"{known.section!r} is not a heading of migration.md"
        assert known.name in seen, f"{known.name!r} never differed: remove it from KNOWN"


def test_the_sample_config_as_published_is_refused_by_both(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """prometheus-adapter's own sample config does not load in prometheus-adapter: both refuse
    it at start, naming the YAML error (the comparison above uses it repaired)."""
    theirs = theirs_refusal(control_plane, rules=SAMPLE_CONFIG, work=tmp_path)
    ours = ours_refusal(SAMPLE_CONFIG)
    assert theirs.code != 0, theirs.output
    assert "unable to parse metrics discovery config" in theirs.output, theirs.output
    assert "did not find expected key" in theirs.output, theirs.output
    assert ours.code != 0, ours.output
    assert "invalid YAML at line 30" in ours.output, ours.output
    assert "Traceback" not in ours.output, ours.output


def test_an_external_rule_without_a_namespace_label(
    control_plane: ControlPlane, world: World, tmp_path: Path
) -> None:
    """The sample config (quoting repaired) as it is: its first external rule maps no label to
    namespaces. This adapter refuses the file, naming the rule and the fix; prometheus-adapter
    starts and answers each request for the metric with an error."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(repaired(SAMPLE_CONFIG.read_text()))
    ours = ours_refusal(rules)
    assert ours.code != 0, ours.output
    assert "rule externalRules[0], field resources: no label maps to namespaces" in ours.output
    assert "set resources.namespaced: false" in ours.output
    with start_theirs(Setup(control_plane, world.prometheus.url, rules, tmp_path)) as theirs:
        wait_until(
            "prometheus-adapter to list queue_consumer_lag",
            functools.partial(_listed, theirs, "external:queue_consumer_lag"),
            timeout_s=_READY_S,
            details=theirs.tail,
        )
        for namespace in (NS, "default"):
            answer = theirs.get(f"{E1}/namespaces/{namespace}/queue_consumer_lag")
            assert answer.status == 500, answer
            assert answer.body["message"] == "Internal error occurred: unable to fetch metrics"
        # The rest of the file is served.
        assert theirs.get(f"{E1}/namespaces/{NS}/queue_depth").status == 200


def test_a_resource_outside_the_shipped_role(
    control_plane: ControlPlane, world: World, tmp_path: Path
) -> None:
    """Both adapters under deploy/base's identity and RBAC, a ``<<.Resource>>`` rule naming
    DaemonSets (which that role does not let them list): prometheus-adapter answers 500 "unable
    to list matching resources"; this adapter 500 naming the ClusterRole rule to add
    (docs/configuration.md). By name, no list is needed: both answer the value."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "seriesQuery": 'fluentd_buffer_bytes{namespace!="",daemonset!=""}',
                        "resources": {"template": "<<.Resource>>"},
                        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
                    }
                ]
            }
        )
    )
    with control_plane.admin_client() as api:
        apply_base_rbac(api)
    kubeconfig = control_plane.kubeconfig_for(
        ADAPTER_USER, ("system:serviceaccounts", "system:serviceaccounts:custom-metrics")
    )
    setup = Setup(control_plane, world.prometheus.url, rules, tmp_path, kubeconfig)
    entry = "daemonsets.apps/fluentd_buffer_bytes"
    path = f"{C2}/namespaces/{NS}/daemonsets.apps/*/fluentd_buffer_bytes"
    with contextlib.ExitStack() as stack:
        theirs = stack.enter_context(start_theirs(setup))
        ours = stack.enter_context(start_ours(setup))
        for peer in (theirs, ours):
            wait_until(
                f"{peer.name} to list {entry}",
                functools.partial(_listed, peer, entry),
                timeout_s=_READY_S,
                details=peer.tail,
            )
        answer = theirs.get(path + "?labelSelector=app%3Dfluentd")
        assert answer.status == 500, answer
        assert "unable to list matching resources" in answer.body["message"], answer
        answer = ours.get(path + "?labelSelector=app%3Dfluentd")
        assert answer.status == 500, answer
        assert answer.body["message"] == (
            "cannot list daemonsets.apps: the adapter's own identity lacks the RBAC permission to"
            " list and watch daemonsets.apps: add to the adapter's ClusterRole the rule"
            ' {apiGroups: ["apps"], resources: ["daemonsets"], verbs: ["list", "watch"]}'
            " (the chart: rbac.extraResourceRules)"
        ), answer
        for peer in (theirs, ours):
            named = peer.get(f"{C2}/namespaces/{NS}/daemonsets.apps/fluentd/fluentd_buffer_bytes")
            assert named.status == 200, (peer.name, named)
            assert [i["value"] for i in named.body["items"]] == ["4096"], (peer.name, named)
