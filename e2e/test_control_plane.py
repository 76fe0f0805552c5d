"""Smoke tests of the local control plane: real apiserver, scheduler, controllers and training
operator, kwok-simulated GPU nodes. Only the Kubernetes client is used, as any user would.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from e2e import topology
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
A100 = "NVIDIA-A100-SXM4-80GB"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


# The client's models make every field Optional; the tests read responses as Any and assert
# on the fields that matter.
def _core(api: ApiClient) -> Any:
    return CoreV1Api(api)


def _apps(api: ApiClient) -> Any:
    return AppsV1Api(api)


def _custom(api: ApiClient) -> Any:
    return CustomObjectsApi(api)


def _replica(
    replicas: int, gpus: int, gpu_product: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    resources = {"nvidia.com/gpu": str(gpus), "cpu": "4", "memory": "16Gi"}
    return {
        "replicas": replicas,
        "restartPolicy": "Never",
        "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {
                "nodeSelector": {topology.GPU_PRODUCT_LABEL: gpu_product},
                "tolerations": [GPU_TOLERATION],
                "containers": [
                    {
                        # The training operator finds its container by this name.
                        "name": "pytorch",
                        "image": "lepton/runtime:e2e",
                        "resources": {"requests": resources, "limits": resources},
                    }
                ],
            },
        },
    }


def pytorchjob(
    name: str,
    workers: int,
    gpus: int,
    gpu_product: str = A100,
    worker_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    specs = {"Master": _replica(1, gpus, gpu_product)}
    if workers:
        specs["Worker"] = _replica(workers, gpus, gpu_product, worker_annotations)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            # No backoffLimit: reaching it makes the operator delete every pod, and the tests
            # read the finished pods. cleanPodPolicy None keeps them after the job ends.
            "runPolicy": {"cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": specs,
        },
    }


def _job_condition(api: ApiClient, namespace: str, name: str, kind: str) -> bool:
    job = _custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    conditions = job.get("status", {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def _job_conditions(api: ApiClient, namespace: str, name: str) -> list[tuple[str, str]]:
    job = _custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return [(c["type"], c["status"]) for c in job.get("status", {}).get("conditions") or []]


def _job_pods(api: ApiClient, namespace: str, name: str) -> list[Any]:
    selector = f"training.kubeflow.org/job-name={name}"
    pods: list[Any] = _core(api).list_namespaced_pod(namespace, label_selector=selector).items
    return pods


def _create_job(api: ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    _custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)


def test_nodes_form_the_configured_pools(kube_api: ApiClient) -> None:
    config = topology.load()
    nodes = _core(kube_api).list_node().items
    by_pool: dict[str, list[Any]] = {}
    for node in nodes:
        by_pool.setdefault(node.metadata.labels[topology.POOL_LABEL], []).append(node)
    assert {pool: len(members) for pool, members in by_pool.items()} == {
        pool.name: pool.nodes for pool in config.pools
    }
    for pool in config.pools:
        for node in by_pool[pool.name]:
            gpus = node.status.allocatable.get("nvidia.com/gpu", "0")
            assert int(gpus) == pool.gpus_per_node
            taints = {(t.key, t.value, t.effect) for t in node.spec.taints or []}
            gpu_taint = ("nvidia.com/gpu", "present", "NoSchedule")
            assert (gpu_taint in taints) == bool(pool.gpus_per_node)
            ready = [c for c in node.status.conditions if c.type == "Ready"]
            assert ready and ready[0].status == "True"


def test_pytorchjob_is_placed_on_a100_pool_and_succeeds(
    kube_api: ApiClient, namespace: str
) -> None:
    _create_job(kube_api, namespace, pytorchjob("ddp", workers=3, gpus=8))

    def all_bound() -> list[Any] | None:
        bound = [p for p in _job_pods(kube_api, namespace, "ddp") if p.spec.node_name]
        return bound if len(bound) == 4 else None

    pods = wait_until("the training operator creates 4 pods, all bound to nodes", all_bound)
    core = _core(kube_api)
    node_pools = {
        pod.spec.node_name: core.read_node(pod.spec.node_name).metadata.labels[topology.POOL_LABEL]
        for pod in pods
    }
    assert set(node_pools.values()) == {"a100"}
    # 8 GPUs each on 8-GPU nodes: every replica needs a node of its own.
    assert len(node_pools) == 4
    roles = sorted(p.metadata.labels["training.kubeflow.org/replica-type"] for p in pods)
    assert roles == ["master", "worker", "worker", "worker"]

    wait_until(
        "the PyTorchJob reports Succeeded",
        lambda: _job_condition(kube_api, namespace, "ddp", "Succeeded"),
        describe_state=lambda: _job_conditions(kube_api, namespace, "ddp"),
    )
    master = [p for p in _job_pods(kube_api, namespace, "ddp") if "master" in p.metadata.name]
    assert master[0].status.phase == "Succeeded"
    assert master[0].status.container_statuses[0].state.terminated.exit_code == 0


def test_job_asking_for_more_gpus_than_exist_stays_pending(
    kube_api: ApiClient, namespace: str
) -> None:
    too_many = topology.load().total_gpus + 8
    _create_job(kube_api, namespace, pytorchjob("greedy", workers=0, gpus=too_many))

    def unschedulable() -> Any:
        for pod in _job_pods(kube_api, namespace, "greedy"):
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
                    return pod
        return None

    pod = wait_until("the scheduler marks the master Unschedulable", unschedulable)
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert "nvidia.com/gpu" in scheduled.message
    assert not _job_condition(kube_api, namespace, "greedy", "Succeeded")
    assert not _job_condition(kube_api, namespace, "greedy", "Running")


def test_failing_worker_fails_the_job(kube_api: ApiClient, namespace: str) -> None:
    job = pytorchjob(
        "broken",
        workers=1,
        gpus=8,
        worker_annotations={"lepton.ai/e2e-fail": "true", "lepton.ai/e2e-exit-code": "3"},
    )
    # The master outlives the worker: a master that succeeds first would make the job Succeeded.
    master_template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    master_template["metadata"]["annotations"] = {"lepton.ai/e2e-run-duration": "10m"}
    _create_job(kube_api, namespace, job)

    wait_until(
        "the PyTorchJob reports Failed",
        lambda: _job_condition(kube_api, namespace, "broken", "Failed"),
        describe_state=lambda: _job_conditions(kube_api, namespace, "broken"),
    )
    assert not _job_condition(kube_api, namespace, "broken", "Succeeded")
    worker = [p for p in _job_pods(kube_api, namespace, "broken") if "worker" in p.metadata.name]
    assert worker[0].status.phase == "Failed"
    assert worker[0].status.container_statuses[0].state.terminated.exit_code == 3


def test_retryable_exit_code_restarts_the_worker(kube_api: ApiClient, namespace: str) -> None:
    job = pytorchjob(
        "flaky",
        workers=1,
        gpus=8,
        # 137 (SIGKILL, e.g. an OOM kill) is retryable under restartPolicy ExitCode.
        worker_annotations={"lepton.ai/e2e-fail": "true", "lepton.ai/e2e-exit-code": "137"},
    )
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] = "ExitCode"
    master_template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    master_template["metadata"]["annotations"] = {"lepton.ai/e2e-run-duration": "10m"}
    _create_job(kube_api, namespace, job)

    def worker_uid() -> str | None:
        for pod in _job_pods(kube_api, namespace, "flaky"):
            if pod.metadata.name == "flaky-worker-0":
                return str(pod.metadata.uid)
        return None

    first = wait_until("the worker pod exists", worker_uid)
    wait_until(
        "the training operator replaces the failed worker with a new pod",
        lambda: (uid := worker_uid()) is not None and uid != first,
    )
    assert not _job_condition(kube_api, namespace, "flaky", "Failed")
    assert not _job_condition(kube_api, namespace, "flaky", "Succeeded")


def test_job_pod_reports_termination_message(kube_api: ApiClient, namespace: str) -> None:
    job = pytorchjob("reporter", workers=0, gpus=1)
    master_template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    master_template["metadata"]["annotations"] = {
        "lepton.ai/e2e-termination-message": '{"accuracy": 0.98}'
    }
    _create_job(kube_api, namespace, job)

    wait_until(
        "the PyTorchJob reports Succeeded",
        lambda: _job_condition(kube_api, namespace, "reporter", "Succeeded"),
        describe_state=lambda: _job_conditions(kube_api, namespace, "reporter"),
    )
    (master,) = _job_pods(kube_api, namespace, "reporter")
    terminated = master.status.container_statuses[0].state.terminated
    assert terminated.message == '{"accuracy": 0.98}'


def test_deployment_pods_become_ready_and_are_garbage_collected(
    kube_api: ApiClient, namespace: str
) -> None:
    apps, core = _apps(kube_api), _core(kube_api)
    labels = {"app": "triton"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "triton"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {topology.POOL_LABEL: "cpu"},
                        "containers": [{"name": "triton", "image": "nvcr.io/triton:e2e"}],
                    },
                },
            },
        },
    )
    wait_until(
        "the Deployment reports 2 ready replicas",
        lambda: (
            (apps.read_namespaced_deployment("triton", namespace).status.ready_replicas or 0) == 2
        ),
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app=triton").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" for p in pods)

    apps.delete_namespaced_deployment("triton", namespace, propagation_policy="Background")
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("triton", namespace)
    assert gone.value.status == 404
    wait_until(
        "the garbage collector deletes the ReplicaSet and its pods",
        lambda: (
            not apps.list_namespaced_replica_set(namespace).items
            and not core.list_namespaced_pod(namespace).items
        ),
    )


def test_deleting_a_pytorchjob_garbage_collects_its_pods(
    kube_api: ApiClient, namespace: str
) -> None:
    _create_job(kube_api, namespace, pytorchjob("short", workers=1, gpus=8))
    wait_until("2 pods exist", lambda: len(_job_pods(kube_api, namespace, "short")) == 2)

    _custom(kube_api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "short", propagation_policy="Background"
    )
    wait_until(
        "the garbage collector deletes the job's pods",
        lambda: not _job_pods(kube_api, namespace, "short"),
    )
