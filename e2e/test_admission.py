"""Gang-aware admission on the real control plane: the operator picks a pool for the whole
job from the kwok GPU pools (a100: 4 nodes x 8, h100: 2 x 8), or queues it with a reason.

Each test starts from idle pools (the namespace fixture frees a test's pods afterwards) and
occupies GPUs with "filler" jobs whose pods kwok keeps running.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes.client import AppsV1Api
from kubernetes.client.exceptions import ApiException

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import (
    GROUP,
    PLURALS,
    VERSION,
    condition,
    create,
    events_for,
    get,
    pipeline,
    wait_for_phase,
)
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

A100 = "NVIDIA-A100-SXM4-80GB"
KEEP_RUNNING = {"lepton.ai/e2e-run-duration": "10m"}


def training_job(
    name: str,
    workers: int,
    gpus_per_worker: int,
    gpu_type: str | None = None,
    policy: str = "binpack",
    keep_running: bool = False,
) -> dict[str, Any]:
    job = pipeline()[0]
    job["metadata"] = {"name": name}
    job["spec"]["resources"] = {"workers": workers, "gpusPerWorker": gpus_per_worker}
    if gpu_type is not None:
        job["spec"]["resources"]["gpuType"] = gpu_type
    job["spec"]["scheduling"] = {"policy": policy}
    if keep_running:
        job["spec"]["podMetadata"] = {"annotations": KEEP_RUNNING}
    return job


def pytorchjob(custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
    jobs = custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")
    return next((j for j in jobs["items"] if j["metadata"]["name"] == name), None)


def admitted_pool(custom: Any, namespace: str, name: str) -> str:
    job = wait_until(f"PyTorchJob {name}", lambda: pytorchjob(custom, namespace, name))
    selector = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["nodeSelector"]
    pool: str = job["metadata"]["labels"]["lepton.ai/pool"]
    assert selector["lepton.ai/node-pool"] == pool
    return pool


def running_pods_on(core: Any, namespace: str, job: str, count: int) -> list[str]:
    """Node names of the job's pods once kube-scheduler bound all `count` and kwok runs them."""

    def bound() -> list[str] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"training.kubeflow.org/job-name={job}"
        ).items
        running = [p for p in pods if p.spec.node_name and p.status.phase == "Running"]
        return [p.spec.node_name for p in running] if len(running) == count else None

    return wait_until(f"{count} running pods of {job}", bound)


def delete_training_job(custom: Any, core: Any, namespace: str, name: str) -> None:
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS["LeptonTrainingJob"], name
    )
    # Garbage collection of the children is another test's subject; here it may wait for
    # the controller manager to rediscover the just-installed CRDs (up to 30 s), so the
    # PyTorchJob goes now (unless it went already), and its pods without their grace period.
    try:
        custom.delete_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", name)
    except ApiException as error:
        if error.status != 404:  # garbage collection was quicker
            raise
    selector = f"training.kubeflow.org/job-name={name}"
    core.delete_collection_namespaced_pod(
        namespace, label_selector=selector, grace_period_seconds=0
    )
    wait_until(
        f"the pods of {name} gone",
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
    )


def test_policies_choose_between_pools_for_the_same_state(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    # 3 of the 4 a100 nodes busy: a100 has 8 GPUs free (75% allocated), h100 16 (0%). The
    # filler runs anywhere (3 workers of 8 fit only a100): no pinned demand steers binpack.
    create(custom, namespace, training_job("filler", 3, 8, keep_running=True))
    assert admitted_pool(custom, namespace, "filler") == "a100"
    nodes = running_pods_on(core, namespace, "filler", 3)
    assert len(set(nodes)) == 3, "each 8-GPU worker has a node of its own"
    assert all(node.startswith("a100-") for node in nodes)

    create(custom, namespace, training_job("packed", 1, 8, keep_running=True))
    assert admitted_pool(custom, namespace, "packed") == "a100"  # binpack: fills a100 up
    assert running_pods_on(core, namespace, "packed", 1)[0].startswith("a100-")
    delete_training_job(custom, core, namespace, "packed")

    create(custom, namespace, training_job("balanced", 1, 8, policy="least-loaded"))
    assert admitted_pool(custom, namespace, "balanced") == "h100"  # the emptier pool
    finished = wait_for_phase(custom, "LeptonTrainingJob", namespace, "balanced", "Succeeded")
    assert finished["status"]["pool"] == "h100"


def test_a_gang_that_does_not_fit_waits_queued_and_starts_when_gpus_free(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    create(custom, namespace, training_job("filler", 4, 8, gpu_type=A100, keep_running=True))
    running_pods_on(core, namespace, "filler", 4)

    create(custom, namespace, training_job("waiting", 2, 8, gpu_type=A100))
    queued = wait_for_phase(custom, "LeptonTrainingJob", namespace, "waiting", "Queued")
    ready = condition(queued, "Ready")
    assert ready is not None and ready["reason"] == "InsufficientGPUs"
    assert "2 workers x 8 GPUs" in ready["message"]
    assert "a100: 0 of 32 free" in ready["message"]
    assert re.search(r"\(number \d+ of \d+ queued\)$", ready["message"]), ready["message"]
    assert pytorchjob(custom, namespace, "waiting") is None, "nothing is created while queued"
    assert ("Normal", "Queued") in events_for(core, namespace, "waiting")

    metrics = operator.metrics()
    assert 'lepton_admissions_total{kind="LeptonTrainingJob",outcome="InsufficientGPUs"}' in metrics
    assert (
        'lepton_pool_gpus{gpu_product="NVIDIA-A100-SXM4-80GB",pool="a100",state="capacity"} 32.0'
        in metrics
    )

    delete_training_job(custom, core, namespace, "filler")
    assert admitted_pool(custom, namespace, "waiting") == "a100"
    wait_for_phase(custom, "LeptonTrainingJob", namespace, "waiting", "Succeeded")


def test_a_gang_larger_than_any_pool_says_so(
    operator: OperatorProcess, custom: Any, namespace: str, volumes: None
) -> None:
    create(custom, namespace, training_job("huge", 5, 8, gpu_type=A100))
    queued = wait_for_phase(custom, "LeptonTrainingJob", namespace, "huge", "Queued")
    ready = condition(queued, "Ready")
    assert ready is not None and ready["reason"] == "ExceedsPoolCapacity"
    assert "a100: 4 nodes of 8 GPUs" in ready["message"]
    assert get(custom, "LeptonTrainingJob", namespace, "huge")["status"].get("pool") is None


def settle(custom: Any, core: Any, namespace: str, names: list[str], admitted: int) -> None:
    """Every job is either admitted (its PyTorchJob's pods all bound) or Queued with nothing."""

    def settled() -> bool:
        jobs = {n: get(custom, "LeptonTrainingJob", namespace, n) for n in names}
        queued = [n for n, j in jobs.items() if j.get("status", {}).get("phase") == "Queued"]
        started = [n for n in names if pytorchjob(custom, namespace, n) is not None]
        return len(started) == admitted and len(queued) == len(names) - admitted

    wait_until(f"{admitted} of {len(names)} jobs admitted, the rest queued", settled)


def assert_exactly_what_fits(
    custom: Any, core: Any, namespace: str, names: list[str], admitted: int, workers: int
) -> None:
    started = [n for n in names if pytorchjob(custom, namespace, n) is not None]
    assert len(started) == admitted, started
    for name in started:
        running_pods_on(core, namespace, name, workers)  # bound and running, every worker
    pods = core.list_namespaced_pod(namespace).items
    assert all(p.spec.node_name for p in pods), "a pod of an admitted gang was never bound"
    assert len(pods) == admitted * workers
    waiting = [n for n in names if n not in started]

    def positions() -> list[int]:
        return [
            get(custom, "LeptonTrainingJob", namespace, n)["status"]["queuePosition"]
            for n in waiting
        ]

    # Positions are the cluster-wide queue's (jobs of other namespaces may stand before these);
    # same-second creations are ordered by name. Each job's position is published on its own,
    # so right after the last admission one may still show the position it had before.
    wait_until(
        "queue positions distinct and in order",
        lambda: positions() == sorted(set(positions())) and positions()[0] >= 1,
        describe_state=positions,
    )
    queued = [get(custom, "LeptonTrainingJob", namespace, n) for n in waiting]
    for job in queued:
        admitted_condition = condition(job, "Admitted")
        assert admitted_condition is not None and admitted_condition["status"] == "False"
    for name in started:
        running = get(custom, "LeptonTrainingJob", namespace, name)
        admitted_condition = condition(running, "Admitted")
        assert admitted_condition is not None and admitted_condition["status"] == "True"


@pytest.mark.parametrize(
    ("count", "workers", "gpu_type", "fit"),
    [
        pytest.param(3, 4, A100, 1, id="3 gangs each filling a100"),
        pytest.param(4, 2, None, 3, id="4 gangs of 16 GPUs on 48, any pool"),
    ],
)
def test_gangs_applied_at_once_admit_exactly_what_fits(
    operator: OperatorProcess,
    custom: Any,
    core: Any,
    namespace: str,
    volumes: None,
    count: int,
    workers: int,
    gpu_type: str | None,
    fit: int,
) -> None:
    names = [f"gang-{i}" for i in range(count)]
    jobs = [training_job(n, workers, 8, gpu_type=gpu_type, keep_running=True) for n in names]
    with ThreadPoolExecutor(max_workers=count) as pool:  # at the same moment, in parallel
        list(pool.map(lambda job: create(custom, namespace, job), jobs))
    settle(custom, core, namespace, names, fit)
    assert_exactly_what_fits(custom, core, namespace, names, fit, workers)


def gpu_endpoint(name: str, replicas: int) -> dict[str, Any]:
    """The sample endpoint on `replicas` A100 GPUs (one each), serving a model URI directly."""
    _, compression, endpoint = pipeline()
    endpoint["metadata"] = {"name": name}
    endpoint["spec"]["source"] = {"modelURI": compression["spec"]["output"]["uri"]}
    endpoint["spec"].pop("autoscaling")
    endpoint["spec"]["replicas"] = replicas
    endpoint["spec"]["resources"].update({"gpus": 8, "gpuType": A100})
    return endpoint


def test_a_gpu_endpoint_waits_queued_as_a_gang_and_is_placed_once_it_fits(
    operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    apps: Any = AppsV1Api(core.api_client)
    create(custom, namespace, training_job("filler", 3, 8, gpu_type=A100, keep_running=True))
    running_pods_on(core, namespace, "filler", 3)
    # Two replicas of 8 GPUs; one a100 node is free: neither replica starts.
    create(custom, namespace, gpu_endpoint("serve", replicas=2))
    queued = wait_for_phase(custom, "LeptonEndpoint", namespace, "serve", "Queued")
    admitted = condition(queued, "Admitted")
    assert admitted is not None and admitted["status"] == "False"
    assert admitted["reason"] == "InsufficientGPUs"
    assert queued["status"]["queuePosition"] >= 1
    assert not apps.list_namespaced_deployment(namespace).items, "nothing is created while queued"

    delete_training_job(custom, core, namespace, "filler")
    deployment = wait_until(
        "the endpoint's Deployment",
        lambda: next(iter(apps.list_namespaced_deployment(namespace).items), None),
    )
    assert deployment.metadata.labels["lepton.ai/pool"] == "a100"
    assert deployment.spec.template.spec.node_selector["lepton.ai/node-pool"] == "a100"

    def placed() -> dict[str, Any] | None:
        endpoint = get(custom, "LeptonEndpoint", namespace, "serve")
        return endpoint if endpoint.get("status", {}).get("pool") == "a100" else None

    endpoint = wait_until("the endpoint reports its pool", placed)
    admitted = condition(endpoint, "Admitted")
    assert admitted is not None and admitted["status"] == "True"
    assert endpoint["status"].get("queuePosition") is None
