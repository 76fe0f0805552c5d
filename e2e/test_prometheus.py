"""The operator's metrics through a real Prometheus, and the chart's PromQL against it.

A Prometheus (the Debian package's binary, see e2e/prometheus.py) scrapes the operator every
second and evaluates the chart's recording rules and alerts. The sample pipeline runs once for
the module (kwok plays the pods), next to one training job too large for any pool, which stays
queued so that the queue-length gauge has a series. Then:
- the pool, queue, reconcile and phase series are there, with the labels the dashboard uses;
- every dashboard query parses and returns a series, and every operator metric the dashboard
  names is exported (a misspelled name would otherwise hide behind an `or vector(0)`);
- every rule expression of the chart parses, and Prometheus evaluates the loaded rules cleanly.

No exact numbers: they depend on timing (rates over a few seconds of samples), not on the code.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from e2e import topology
from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import create, pipeline, wait_for_phase
from e2e.prometheus import JOB_NAME, PrometheusProcess
from e2e.waiting import wait_until
from tests.dashboard import dashboard_queries
from tests.prometheus_rules import rule_groups, write_rules_file

pytestmark = pytest.mark.e2e

A100 = "NVIDIA-A100-SXM4-80GB"
# Operator metrics that can honestly be absent after this module's run:
# - lepton_preemptions_total: preemption is off by default (and nothing is evicted here), and a
#   labelled counter exports no series until a first eviction creates its `kind` child;
# - lepton_reconcile_errors_total: counted only when a reconcile raises unexpectedly, which a
#   healthy run never does (its child appears with the first error).
# The dashboard's queries over them end in `or on () vector(0)` (or a `* 0` of the reconcile
# rate), so they still return a series.
MAY_BE_ABSENT = frozenset({"lepton_preemptions_total", "lepton_reconcile_errors_total"})
# A name in PromQL that the operator exports: lepton_..., and for histograms the _bucket/_count
# series (their metadata name is the histogram's).
_METRIC_NAME = re.compile(r"(?<![\w:])lepton_\w+(?![\w:])")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|count|sum)$")

DASHBOARD = dashboard_queries()
RULES = [rule for group in rule_groups()["groups"] for rule in group["rules"]]


def _rule_id(rule: dict[str, Any]) -> str:
    return str(rule.get("record") or rule["alert"])


@pytest.fixture(scope="module")
def prometheus(
    operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusProcess]:
    # The chart's rules as a cluster gets them (rendered by helm), so recorded series exist too.
    rules = write_rules_file(tmp_path_factory.mktemp("rules") / "lepton-rules.yaml")
    with PrometheusProcess(operator.metrics_port, rule_files=[rules]) as server:
        yield server
    assert not server.running


@pytest.fixture(scope="module")
def pipeline_ran(operator: OperatorProcess, kube_api: ApiClient) -> Iterator[str]:
    """The sample pipeline, Succeeded and Available, and a job that waits in the queue.

    Module scope (its own namespace, not the per-test fixture): every test here reads the same
    run's metrics, so that each can be run alone with -k.
    """
    core: Any = CoreV1Api(kube_api)
    custom: Any = CustomObjectsApi(kube_api)
    namespace = f"e2e-prom-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    wait_until(
        f"ServiceAccount default in {namespace}",
        lambda: any(
            sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(namespace).items
        ),
    )
    volumes = create_bound_claims(core, namespace)
    try:
        for manifest in pipeline():
            create(custom, namespace, manifest)
        # 5 x 8 GPUs of A100 (the pool has 4 x 8): admission keeps it queued for good.
        huge = pipeline()[0]
        huge["metadata"] = {"name": "huge"}
        huge["spec"]["resources"] = {"workers": 5, "gpusPerWorker": 8, "gpuType": A100}
        create(custom, namespace, huge)
        wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded")
        wait_for_phase(custom, "LeptonCompression", namespace, "mnist-compressed", "Succeeded")
        wait_for_phase(custom, "LeptonEndpoint", namespace, "mnist", "Available")
        wait_for_phase(custom, "LeptonTrainingJob", namespace, "huge", "Queued")
        yield namespace
    finally:
        core.delete_namespace(namespace)
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
        # Free the pods' GPUs for the next module, as the namespace fixture does.
        wait_until(
            f"pods of namespace {namespace} deleted",
            lambda: not core.list_namespaced_pod(namespace).items,
        )
        for volume in volumes:
            core.delete_persistent_volume(volume)


def _series_appear(prometheus: PrometheusProcess, promql: str) -> list[dict[str, Any]]:
    """The query's series, once it has some; a failed assertion naming the query if never."""
    return wait_until(
        f"Prometheus returns a series for {promql!r}",
        lambda: prometheus.series(promql) or None,
        timeout=60,
        describe_state=lambda: prometheus.query(promql),
    )


def _labels(series: list[dict[str, Any]], label: str) -> set[str]:
    return {entry["metric"].get(label, "") for entry in series}


def _series_cover(
    prometheus: PrometheusProcess, promql: str, labels: tuple[str, ...], expected: set[Any]
) -> set[Any]:
    """The label values (one label: strings; several: tuples) of the query's series, once they
    include `expected`: the operator has counted it, but Prometheus may not have scraped that
    yet (a 1 s scrape interval), so a first answer can lack the newest series."""

    def values() -> set[Any]:
        found = {
            tuple(entry["metric"].get(label, "") for label in labels)
            for entry in prometheus.series(promql)
        }
        return {value[0] for value in found} if len(labels) == 1 else found

    return wait_until(
        f"Prometheus returns {sorted(expected)} for {promql!r}",
        lambda: values() if expected <= values() else None,
        timeout=60,
        describe_state=values,
    )


def test_prometheus_scrapes_the_operator(prometheus: PrometheusProcess) -> None:
    (up,) = _series_appear(prometheus, f'up{{job="{JOB_NAME}"}} == 1')
    assert up["metric"]["instance"] == prometheus.target


def test_pool_queue_reconcile_and_phase_series_after_the_pipeline(
    prometheus: PrometheusProcess, pipeline_ran: str
) -> None:
    gpu_pools = {pool.name for pool in topology.load().pools if pool.gpus_per_node > 0}
    _series_cover(prometheus, 'lepton_pool_gpus{state="capacity"} > 0', ("pool",), gpu_pools)
    every_state = {"capacity", "allocated", "reserved", "free", "fragmented"}
    assert _series_cover(prometheus, "lepton_pool_gpus", ("state",), every_state) == every_state

    # The queued "huge" job is counted under the pool it asked for, or "auto".
    queued = _series_appear(prometheus, "lepton_admission_queue_length >= 1")
    assert _labels(queued, "pool") & {"a100", "auto"}, queued

    kinds = {"LeptonTrainingJob", "LeptonCompression", "LeptonEndpoint"}
    _series_cover(prometheus, "lepton_reconcile_duration_seconds_count > 0", ("kind",), kinds)
    # Parses and runs; a series only once a reconcile failed (see MAY_BE_ABSENT).
    prometheus.series("lepton_reconcile_errors_total")

    expected = {
        ("LeptonTrainingJob", "Succeeded"),
        ("LeptonCompression", "Succeeded"),
        ("LeptonEndpoint", "Available"),
        ("LeptonTrainingJob", "Queued"),
    }
    _series_cover(prometheus, "lepton_phase_transitions_total > 0", ("kind", "phase"), expected)
    admitted = 'lepton_admissions_total{outcome="Admitted"} > 0'
    _series_cover(prometheus, admitted, ("kind",), {"LeptonTrainingJob"})


@pytest.mark.parametrize(
    "promql", DASHBOARD, ids=[f"panel-query-{i}" for i in range(len(DASHBOARD))]
)
def test_dashboard_query_parses_and_returns_a_series(
    prometheus: PrometheusProcess, pipeline_ran: str, promql: str
) -> None:
    answer = prometheus.query(promql)
    assert answer["status"] == "success", f"{promql!r}: {answer.get('error')}"
    # Every query returns a series after this run: the ones over metrics that may be absent
    # fall back to vector(0). Waited for: a rate needs two samples inside its window.
    assert _series_appear(prometheus, promql)


def test_every_metric_the_dashboard_names_is_exported(
    prometheus: PrometheusProcess, pipeline_ran: str
) -> None:
    named = {
        _HISTOGRAM_SUFFIX.sub("", name)
        for query in DASHBOARD
        for name in _METRIC_NAME.findall(query)
    }
    assert named, "the dashboard names no lepton_ metric"
    for name in sorted(named - MAY_BE_ABSENT):
        # Histograms are exported as <name>_bucket/_count/_sum; match any of them.
        _series_appear(prometheus, f'count({{__name__=~"{name}(_bucket|_count|_sum)?"}})')


@pytest.mark.parametrize("rule", RULES, ids=[f"{i}-{_rule_id(r)}" for i, r in enumerate(RULES)])
def test_rule_expression_parses(prometheus: PrometheusProcess, rule: dict[str, Any]) -> None:
    answer = prometheus.query(rule["expr"])
    assert answer["status"] == "success", f"{_rule_id(rule)}: {answer.get('error')}"


def test_prometheus_evaluates_the_chart_rules_cleanly(
    prometheus: PrometheusProcess, pipeline_ran: str
) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # "unknown" until a rule's first evaluation (every second).
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    loaded = wait_until("every rule evaluated once", evaluated, timeout=60)
    assert len(loaded) == len(RULES)
    assert all(rule["health"] == "ok" for rule in loaded), [
        (rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] != "ok"
    ]
    # The pool ratios need only lepton_pool_gpus: recorded for every GPU pool.
    gpu_pools = {pool.name for pool in topology.load().pools if pool.gpus_per_node > 0}
    _series_cover(prometheus, "pool:lepton_pool_gpus_allocated:ratio", ("pool",), gpu_pools)
