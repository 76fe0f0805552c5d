"""Endpoint tuning on the operator side: what the pods are told, how a pod's report becomes
status, when a result is reused, and when the endpoint is Degraded for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from lepton_operator.api.endpoint import EndpointStatus, EndpointTuningStatus, LeptonEndpoint
from lepton_operator.builders.endpoint import (
    PACKAGE_CONTAINER,
    TUNING_KEY_ANNOTATION,
    ResolvedEndpointSource,
    render_endpoint_children,
    tuning_key,
)
from lepton_operator.scheduling.placement import Placement
from lepton_operator.services.tuning_results import TuningResults
from lepton_operator.settings import OperatorSettings
from lepton_operator.status import EndpointCore, with_tuning_outcome
from lepton_operator.tuning_reports import current_tuning, tuning_report, tuning_status
from lepton_runtime.contract import (
    ExportFormat,
    PackageConfig,
    PackageSummary,
    TritonSettings,
    TuningMeasurement,
    TuningResult,
)
from tests.factories import make_endpoint
from tests.golden import assert_matches_golden

SETTINGS = OperatorSettings(runtime_image="registry.local/lepton/runtime:test")
SOURCE = ResolvedEndpointSource("pvc://artifacts/mnist-compressed")
NOW = datetime(2026, 12, 4, tzinfo=UTC)
TUNING = {"latencyBudgetMs": 5, "concurrency": [8, 32]}


def _endpoint(
    tuning: dict[str, Any] | None = TUNING, status: dict[str, Any] | None = None
) -> LeptonEndpoint:
    spec: dict[str, Any] = {"triton": {"backend": "python"}, "resources": {"cpu": "4"}}
    if tuning is not None:
        spec["tuning"] = tuning
    manifest = make_endpoint(spec=spec)
    if status is not None:
        manifest["status"] = status
    return LeptonEndpoint.model_validate(manifest)


def _render(endpoint: LeptonEndpoint) -> tuple[PackageConfig, dict[str, Any]]:
    manifests = {
        m["kind"]: m
        for m in render_endpoint_children(endpoint, SOURCE, Placement(pool=None), SETTINGS)
    }
    config = PackageConfig.model_validate_json(manifests["ConfigMap"]["data"]["config.json"])
    return config, manifests["Deployment"]


def _measurement(
    batch: int, throughput: float, p99: float, within: bool, model_format: ExportFormat = "onnx"
) -> TuningMeasurement:
    return TuningMeasurement(
        settings=TritonSettings(
            max_batch_size=batch,
            max_queue_delay_microseconds=500,
            instances=2,
            model_format=model_format,
        ),
        throughput=throughput,
        p50_ms=p99 / 2,
        p99_ms=p99,
        within_budget=within,
    )


def _result(budget_met: bool = True) -> TuningResult:
    fast = _measurement(16, 6000.0, 4.2 if budget_met else 7.5, budget_met, "torchscript")
    slow = _measurement(1, 1500.0, 6.0, False)
    return TuningResult(
        chosen=fast,
        candidates=[slow, fast],
        latency_budget_ms=5.0,
        budget_met=budget_met,
        best_p99_ms=min(fast.p99_ms, slow.p99_ms),
        seconds=31.5,
        grid_size=48,
        strategy="quick",
    )


def _pod(key: str | None, exit_code: int = 0, message: str | None = None) -> dict[str, Any]:
    summary = PackageSummary(
        repository="/models", model_name="mnist", version=1, backend="python",
        config_path="/models/mnist/config.pbtxt", tuning=_result(),
    )  # fmt: skip
    annotations = {TUNING_KEY_ANNOTATION: key} if key else {}
    return {
        "metadata": {"name": "mnist-abc", "annotations": annotations},
        "status": {
            "initContainerStatuses": [
                {
                    "name": PACKAGE_CONTAINER,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "message": message
                            if message is not None
                            else summary.model_dump_json(by_alias=True),
                        }
                    },
                }
            ]
        },
    }


def test_a_tuning_endpoint_matches_golden() -> None:
    manifests = render_endpoint_children(_endpoint(), SOURCE, Placement(pool=None), SETTINGS)
    assert_matches_golden("endpoint-tuning", manifests)


def test_first_rollout_tunes_in_the_package_step_with_the_replicas_resources() -> None:
    config, deployment = _render(_endpoint())
    assert config.tuning is not None
    assert config.tuning.latency_budget_ms == 5
    assert config.tuning.concurrency == [8, 32]
    pod = deployment["spec"]["template"]
    package = pod["spec"]["initContainers"][0]
    assert package["name"] == PACKAGE_CONTAINER
    assert package["resources"]["requests"]["cpu"] == "4"  # the pod's share, not 500m
    assert pod["metadata"]["annotations"][TUNING_KEY_ANNOTATION] == tuning_key(
        _endpoint(), SOURCE.model_uri
    )


def _tuned_status(endpoint: LeptonEndpoint, key: str | None = None) -> dict[str, Any]:
    report = tuning_report(_pod(key or tuning_key(endpoint, SOURCE.model_uri)))
    assert report is not None
    return EndpointStatus(tuning=tuning_status(report)).to_wire()


def test_a_known_result_is_served_without_measuring_and_without_a_restart() -> None:
    fresh = _endpoint()
    tuned = _endpoint(status=_tuned_status(fresh))
    fresh_config, fresh_deployment = _render(fresh)
    config, deployment = _render(tuned)
    assert config.tuning is None
    assert (config.max_batch_size, config.instance_group.count) == (16, 2)
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.model_format == "torchscript"  # the file the choice was measured with
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == fresh_deployment["spec"]["template"]["metadata"]["annotations"]
    assert fresh_config != config


def test_a_result_for_another_model_or_space_is_not_reused() -> None:
    stale = _endpoint(status=_tuned_status(_endpoint(), key="0123456789abcdef"))
    config, _ = _render(stale)
    assert config.tuning is not None


@pytest.mark.parametrize(
    "change",
    [
        {"tuning": {**TUNING, "latencyBudgetMs": 10}},
        {"tuning": {**TUNING, "space": {"instanceCounts": [1]}}},
        {"tuning": {**TUNING, "space": {"modelFormats": ["torchscript"]}}},
        {"resources": {"cpu": "8"}},
    ],
)
def test_a_spec_change_retunes_and_rolls(change: dict[str, Any]) -> None:
    before = _endpoint()
    spec = before.spec.to_wire() | change
    after = LeptonEndpoint.model_validate(make_endpoint(spec=spec))
    assert tuning_key(after, SOURCE.model_uri) != tuning_key(before, SOURCE.model_uri)
    templates = [_render(e)[1]["spec"]["template"] for e in (before, after)]
    assert templates[0] != templates[1]  # the Deployment rolls, and the new pods tune


def test_no_tuning_no_key() -> None:
    endpoint = _endpoint(tuning=None)
    assert tuning_key(endpoint, SOURCE.model_uri) is None
    _, deployment = _render(endpoint)
    assert TUNING_KEY_ANNOTATION not in deployment["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (_pod("k1"), True),
        (_pod(None), False),  # not a tuning pod
        (_pod("k1", exit_code=1, message="model failed"), False),
        (_pod("k1", message=json.dumps({"truncated": True})), False),
    ],
)
def test_tuning_report_from_a_pod(pod: dict[str, Any], expected: bool) -> None:
    report = tuning_report(pod)
    assert (report is not None) is expected
    if report is not None:
        assert report.key == "k1"
        assert report.result.chosen.settings.max_batch_size == 16


def test_the_status_keeps_only_a_result_for_the_current_key() -> None:
    report = tuning_report(_pod("k1"))
    assert report is not None
    kept = tuning_status(report)
    assert current_tuning("k1", None, report) == kept
    assert current_tuning("k2", kept, report) is None
    assert current_tuning("k1", kept, None) == kept
    assert current_tuning(None, kept, report) is None
    assert kept.candidates[1].throughput == 6000.0


def _available() -> EndpointCore:
    return EndpointCore("Available", [], "1/1 replicas ready")


def test_a_budget_no_candidate_met_is_degraded_naming_the_fix() -> None:
    report = tuning_report(_pod("k1"))
    assert report is not None
    unmet = tuning_status(type(report)(report.key, _result(budget_met=False)))
    core = with_tuning_outcome(_available(), unmet, 5.0, 3, NOW)
    assert core.phase == "Degraded"
    assert "best p99 seen 6.00 ms" in core.message
    assert "spec.tuning.latencyBudgetMs" in core.message
    (condition,) = core.conditions
    assert (condition.type, condition.status, condition.reason) == (
        "Degraded",
        "True",
        "LatencyBudgetNotMet",
    )


def test_a_met_budget_or_no_tuning_leaves_the_phase() -> None:
    report = tuning_report(_pod("k1"))
    assert report is not None
    met: EndpointTuningStatus = tuning_status(report)
    assert with_tuning_outcome(_available(), met, 5.0, 3, NOW).phase == "Available"
    assert with_tuning_outcome(_available(), None, None, 3, NOW).phase == "Available"
    progressing = EndpointCore("Progressing", [], "0/1 replicas ready")
    unmet = tuning_status(type(report)(report.key, _result(budget_met=False)))
    assert with_tuning_outcome(progressing, unmet, 5.0, 3, NOW).phase == "Progressing"


def test_an_old_pods_report_does_not_hide_a_new_pods() -> None:
    results = TuningResults()
    owner = ("LeptonEndpoint", "default", "mnist")
    new, old = tuning_report(_pod("new")), tuning_report(_pod("old"))
    assert new is not None and old is not None
    assert results.record(owner, new)
    assert results.record(owner, old)  # a pod of the previous spec, reporting later
    assert not results.record(owner, old)  # the same report again changes nothing
    assert results.get(owner, "new") == new
    assert results.get(owner, None) is None
    results.forget(owner)
    assert results.get(owner, "new") is None
