"""Kueue for real: jobs with `scheduling.queueName` are admitted by Kueue, not by the operator.

Kueue (built from its Go module, run out of cluster: e2e/kueue.py) watches the suspended
PyTorchJobs Lepton makes for such jobs, creates their Workloads, reserves quota in a ClusterQueue
whose ResourceFlavor is a kwok GPU pool, and unsuspends them with the flavor's node labels; kwok
plays the pods. The operator reports what Kueue decided: Queued with Kueue's own reason while a
job waits, `status.queueAdmission` (queues, when, how long it waited) once Kueue admitted it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from e2e import kueue
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import (
    crd_established,
    create,
    get,
    kubectl,
    pipeline,
    wait_for_phase,
)
from e2e.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.kueue]

CRD_PLURALS = ("workloads", "clusterqueues", "localqueues", "resourceflavors")


@pytest.fixture(scope="module")
def kueue_running(kubeconfig_path: Path) -> Iterator[kueue.KueueProcess]:
    problems = kueue.missing_prerequisites()
    assert not problems, "Kueue cannot run here: " + "; ".join(problems)
    kubectl("apply", "--server-side", "-f", str(kueue.crd_dir()))
    for plural in CRD_PLURALS:
        crd = f"{plural}.{kueue.GROUP}"
        wait_until(f"crd/{crd} Established", partial(crd_established, crd), timeout=120)
    with kueue.KueueProcess(kubeconfig_path) as process:
        yield process
        assert process.running, f"Kueue stopped during the tests:\n{process.log_tail()}"


@pytest.fixture(scope="module")
def kueue_operator(
    crds: None, kubeconfig_path: Path, kueue_running: kueue.KueueProcess
) -> Iterator[OperatorProcess]:
    # Started after Kueue's CRDs exist, so that its Workload watch starts with it.
    with OperatorProcess(kubeconfig_path, "lepton-operator-kueue") as process:
        yield process


def _apply_queues(custom: Any, namespace: str, gpu_quota: int) -> str:
    """The flavor, ClusterQueue and LocalQueue `team`; returns the ClusterQueue's name."""
    cluster_queue = ""
    for obj in kueue.queues(namespace, "a100", gpu_quota):
        plural = obj["kind"].lower() + "s"
        if obj["kind"] == "LocalQueue":
            custom.create_namespaced_custom_object(
                kueue.GROUP, kueue.VERSION, namespace, plural, obj
            )
        else:
            custom.create_cluster_custom_object(kueue.GROUP, kueue.VERSION, plural, obj)
        if obj["kind"] == "ClusterQueue":
            cluster_queue = obj["metadata"]["name"]
    return cluster_queue


def _delete_queues(custom: Any, namespace: str) -> None:
    for obj in kueue.queues(namespace, "a100", 0):
        if obj["kind"] != "LocalQueue":
            custom.delete_cluster_custom_object(
                kueue.GROUP, kueue.VERSION, obj["kind"].lower() + "s", obj["metadata"]["name"]
            )


def _queued_training_job(name: str, workers: int, gpus_per_worker: int) -> dict[str, Any]:
    training = copy.deepcopy(pipeline()[0])
    training["metadata"]["name"] = name
    training["spec"]["resources"].update({"workers": workers, "gpusPerWorker": gpus_per_worker})
    training["spec"]["scheduling"] = {"queueName": "team"}
    return dict(training)


def _pytorchjob(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = custom.get_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", name
    )
    return found


def _queued_with(custom: Any, namespace: str, name: str, words: str) -> dict[str, Any] | None:
    status = get(custom, "LeptonTrainingJob", namespace, name).get("status") or {}
    if status.get("phase") == "Queued" and words in (status.get("message") or ""):
        return status
    return None


def test_kueue_admits_a_queued_job_which_then_runs_and_succeeds(
    kueue_operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    # The job comes first: its LocalQueue does not exist yet, so Kueue keeps it waiting.
    create(custom, namespace, _queued_training_job("queued", workers=2, gpus_per_worker=1))
    status = wait_until(
        "the job waits with Kueue's reason",
        lambda: _queued_with(custom, namespace, "queued", "Kueue: "),
        describe_state=lambda: get(custom, "LeptonTrainingJob", namespace, "queued").get("status"),
    )
    admitted = next(c for c in status["conditions"] if c["type"] == "Admitted")
    assert admitted["status"] == "False", status
    assert "queueAdmission" not in status
    assert _pytorchjob(custom, namespace, "queued")["spec"]["runPolicy"]["suspend"] is True
    assert not core.list_namespaced_pod(namespace).items

    cluster_queue = _apply_queues(custom, namespace, gpu_quota=8)
    try:
        job = wait_for_phase(custom, "LeptonTrainingJob", namespace, "queued", "Succeeded")
        admission = job["status"]["queueAdmission"]
        assert admission["localQueue"] == "team"
        assert admission["clusterQueue"] == cluster_queue
        assert admission["waitedSeconds"] >= 0
        assert admission["admittedAt"]
        assert job["status"]["results"]["accuracy"] > 0.9
        # Kueue, not the operator, placed it: the flavor's node label is on the pods.
        pods = core.list_namespaced_pod(
            namespace, label_selector="training.kubeflow.org/job-name=queued"
        ).items
        assert len(pods) == 2
        assert all(p.spec.node_selector["lepton.ai/node-pool"] == "a100" for p in pods)
        assert all(p.spec.node_name.startswith("a100-") for p in pods)
    finally:
        _delete_queues(custom, namespace)


def test_a_job_over_its_queues_quota_waits_with_kueues_reason(
    kueue_operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    _apply_queues(custom, namespace, gpu_quota=8)
    try:
        # 4 workers x 4 GPUs = 16 GPUs: twice the ClusterQueue's quota.
        create(custom, namespace, _queued_training_job("too-big", workers=4, gpus_per_worker=4))
        status = wait_until(
            "the job waits for quota, in Kueue's words",
            lambda: _queued_with(custom, namespace, "too-big", "insufficient quota"),
            describe_state=lambda: get(custom, "LeptonTrainingJob", namespace, "too-big").get(
                "status"
            ),
        )
        assert "nvidia.com/gpu" in status["message"], status
        assert _pytorchjob(custom, namespace, "too-big")["spec"]["runPolicy"]["suspend"] is True
        assert not core.list_namespaced_pod(namespace).items
    finally:
        _delete_queues(custom, namespace)
