"""Pods under the restricted Pod Security profile, Secrets never read, pod state in status.

The namespace enforces `restricted` through the real API server's PodSecurity admission, so a
child whose pods broke the profile would never get a pod. The operator has no access to
Secrets (the chart grants none); a known Secret value is looked for everywhere the operator
writes. A pod the real scheduler cannot place is reported in its owner's status from the pod's
own state, and the reason clears once a node with room joins.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import topology
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import (
    condition,
    create,
    get,
    pipeline,
    wait_for_phase,
    wait_for_ready_reason,
)

pytestmark = pytest.mark.e2e

RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}
SECRET = "creds"


@pytest.fixture
def restricted(core: Any, namespace: str) -> str:
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    return namespace


def test_every_workload_is_admitted_under_restricted_and_no_secret_value_leaks(
    operator: OperatorProcess, custom: Any, core: Any, restricted: str, volumes: None
) -> None:
    namespace = restricted
    value = f"s3cr3t-{uuid.uuid4().hex}"
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": SECRET}, "stringData": {"AWS_SECRET_ACCESS_KEY": value}}
    )
    training, compression, endpoint = pipeline()
    for spec in (training["spec"]["dataset"], training["spec"]["output"]):
        spec["secretRef"] = {"name": SECRET}
    compression["spec"]["output"]["secretRef"] = {"name": SECRET}
    for manifest in (training, compression, endpoint):
        create(custom, namespace, manifest)

    wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded")
    wait_for_phase(custom, "LeptonCompression", namespace, "mnist-compressed", "Succeeded")
    wait_for_phase(custom, "LeptonEndpoint", namespace, "mnist", "Available")
    pods = core.list_namespaced_pod(namespace).items
    # 2 training workers, 1 compression worker, 1 Triton replica: all admitted as restricted.
    assert len(pods) >= 4
    refused = [
        e.message
        for e in core.list_namespaced_event(namespace).items
        if "PodSecurity" in (e.message or "")
    ]
    assert refused == []
    # The pods get the Secret by name (envFrom); its value is nowhere the operator writes.
    trainer = next(p for p in pods if "mnist-master" in p.metadata.name)
    env_from = trainer.spec.containers[0].env_from or []
    assert [source.secret_ref.name for source in env_from if source.secret_ref] == [SECRET]
    written = [
        json.dumps(core.api_client.sanitize_for_serialization(item))
        for item in _everything_the_operator_writes(custom, core, namespace)
    ]
    assert written and not [text for text in written if value in text]
    assert value not in operator.log_path.read_text(errors="replace")


def _everything_the_operator_writes(custom: Any, core: Any, namespace: str) -> Iterator[Any]:
    for plural in ("leptontrainingjobs", "leptoncompressions", "leptonendpoints"):
        yield from custom.list_namespaced_custom_object("lepton.ai", "v1alpha1", namespace, plural)[
            "items"
        ]
    yield from custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")[
        "items"
    ]
    yield from core.list_namespaced_config_map(namespace).items
    yield from core.list_namespaced_service(namespace).items
    yield from core.list_namespaced_event(namespace).items
    yield from core.list_namespaced_pod(namespace).items


@pytest.fixture
def big_node(core: Any) -> Iterator[dict[str, Any]]:
    """A CPU node with more room than any other, created only when the test asks for it."""
    pool = topology.Pool(name="big", nodes=1, cpu="512", memory="2000Gi")
    manifest = topology.node_manifest(pool, f"big-{uuid.uuid4().hex[:6]}")
    yield manifest
    if manifest["metadata"]["name"] in {n.metadata.name for n in core.list_node().items}:
        core.delete_node(manifest["metadata"]["name"])


def test_a_pod_that_cannot_be_scheduled_is_reported_and_clears_once_it_fits(
    operator: OperatorProcess,
    custom: Any,
    core: Any,
    namespace: str,
    volumes: None,
    big_node: dict[str, Any],
) -> None:
    training = pipeline()[0]
    training["spec"]["resources"] = {"workers": 1, "gpusPerWorker": 0, "cpu": "300"}
    create(custom, namespace, training)

    # The scheduler may first find the job's claims not yet bound (the PV controller binds them
    # a moment after they are made): also Unschedulable, and the cpu shortfall follows on its
    # next attempt.
    ready = wait_for_ready_reason(
        custom, "LeptonTrainingJob", namespace, "mnist", "Unschedulable", "Insufficient cpu"
    )
    assert ready["status"] == "False"
    assert "spec.resources" in ready["message"]
    assert (
        "Insufficient cpu"
        in get(custom, "LeptonTrainingJob", namespace, "mnist")["status"]["message"]
    )

    core.create_node(big_node)  # the fix: room for it
    finished = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded")
    assert condition(finished, "Ready")["reason"] == "ChildrenCreated"  # type: ignore[index]


def test_pods_a_quota_refuses_are_reported_and_the_job_runs_once_it_allows_them(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    quota = {"metadata": {"name": "small"}, "spec": {"hard": {"requests.cpu": "1"}}}
    core.create_namespaced_resource_quota(namespace, quota)
    training = pipeline()[0]
    training["spec"]["resources"] = {"workers": 2, "gpusPerWorker": 0, "cpu": "2"}
    create(custom, namespace, training)

    # The pods never exist: only the training operator's FailedCreatePod Event says why.
    ready = wait_for_ready_reason(custom, "LeptonTrainingJob", namespace, "mnist", "QuotaExceeded")
    assert "exceeded quota: small" in ready["message"] and "ResourceQuota" in ready["message"]

    core.delete_namespaced_resource_quota("small", namespace)  # the fix
    finished = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded")
    assert condition(finished, "Ready")["reason"] == "ChildrenCreated"  # type: ignore[index]
