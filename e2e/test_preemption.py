"""Gang preemption on the real control plane (an operator started with preemption on).

A module of its own: its operator runs with LEPTON_ADMISSION_PREEMPTION=true, and two
operators deciding at once (no peering) is what the other modules must not meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, SchedulingV1Api

from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import condition, create, events_for, get, wait_for_phase
from e2e.test_admission import (
    A100,
    admitted_pool,
    delete_training_job,
    pytorchjob,
    running_pods_on,
    training_job,
)
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

PRIORITIES = {"lepton-e2e-batch": 10, "lepton-e2e-urgent": 1000}


@pytest.fixture(scope="module")
def priority_classes(kube_api: ApiClient) -> Iterator[None]:
    api: Any = SchedulingV1Api(kube_api)
    existing = {c.metadata.name for c in api.list_priority_class().items}
    for name, value in PRIORITIES.items():
        if name not in existing:
            api.create_priority_class({"metadata": {"name": name}, "value": value})
    yield
    for name in PRIORITIES:
        api.delete_priority_class(name)


@pytest.fixture(scope="module")
def preempting_operator(
    crds: None, kubeconfig_path: Path, priority_classes: None
) -> Iterator[OperatorProcess]:
    settings = {"LEPTON_ADMISSION_PREEMPTION": "true"}
    with OperatorProcess(kubeconfig_path, "lepton-operator-preemption", settings) as process:
        yield process


def prioritised(job: dict[str, Any], priority_class: str) -> dict[str, Any]:
    job["spec"]["scheduling"]["priorityClassName"] = priority_class
    return job


def pods_of(core: Any, namespace: str, job: str) -> list[Any]:
    selector = f"training.kubeflow.org/job-name={job}"
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_a_higher_priority_gang_evicts_a_whole_job_which_queues_and_comes_back(
    preempting_operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    # Two batch jobs fill a100 (2 nodes each); a third runs on h100, which the urgent job
    # (a100 only) has no use for.
    for name, workers, gpu_type in (("batch-a", 2, A100), ("batch-b", 2, A100), ("h", 1, None)):
        job = training_job(name, workers, 8, gpu_type=gpu_type, keep_running=True)
        create(custom, namespace, prioritised(job, "lepton-e2e-batch"))
        running_pods_on(core, namespace, name, workers)
    assert admitted_pool(custom, namespace, "h") == "h100"

    urgent = training_job("urgent", 2, 8, gpu_type=A100, keep_running=True)
    create(custom, namespace, prioritised(urgent, "lepton-e2e-urgent"))
    assert admitted_pool(custom, namespace, "urgent") == "a100"
    running_pods_on(core, namespace, "urgent", 2)

    # Exactly one batch job went, all of it (the youngest of the two: batch-b), and nothing else.
    assert pytorchjob(custom, namespace, "batch-b") is None
    assert pods_of(core, namespace, "batch-b") == []
    assert len(pods_of(core, namespace, "batch-a")) == 2
    assert pytorchjob(custom, namespace, "h") is not None
    evicted = wait_for_phase(custom, "LeptonTrainingJob", namespace, "batch-b", "Queued")
    preempted = condition(evicted, "Preempted")
    assert preempted is not None and preempted["status"] == "True"
    assert (
        f"preempted by LeptonTrainingJob {namespace}/urgent (priority 1000)"
        in (preempted["message"])
    )
    assert "resumes from its newest checkpoint" in preempted["message"]
    assert ("Warning", "Preempted") in events_for(core, namespace, "batch-b")
    assert 'lepton_preemptions_total{kind="LeptonTrainingJob"} 1.0' in (
        preempting_operator.metrics()
    )

    # The urgent job finishes (here: is deleted); the evicted one is admitted again.
    delete_training_job(custom, core, namespace, "urgent")
    assert admitted_pool(custom, namespace, "batch-b") == "a100"
    running_pods_on(core, namespace, "batch-b", 2)

    def readmitted() -> dict[str, Any] | None:
        found = condition(get(custom, "LeptonTrainingJob", namespace, "batch-b"), "Preempted")
        return found if found is not None and found["status"] == "False" else None

    back = wait_until("batch-b says it was admitted again", readmitted)
    assert back["reason"] == "Readmitted"


def test_no_job_is_evicted_when_evicting_all_lower_ones_would_not_make_room(
    preempting_operator: OperatorProcess, custom: Any, core: Any, namespace: str, volumes: None
) -> None:
    # a100: 2 nodes urgent (not evictable by an equal priority), 2 nodes batch.
    for name, priority_class in (("keeper", "lepton-e2e-urgent"), ("batch", "lepton-e2e-batch")):
        job = training_job(name, 2, 8, gpu_type=A100, keep_running=True)
        create(custom, namespace, prioritised(job, priority_class))
        running_pods_on(core, namespace, name, 2)
    # 3 nodes needed, only 2 held by lower priorities: it waits and evicts nobody.
    big = prioritised(training_job("big", 3, 8, gpu_type=A100), "lepton-e2e-urgent")
    create(custom, namespace, big)
    queued = wait_for_phase(custom, "LeptonTrainingJob", namespace, "big", "Queued")
    ready = condition(queued, "Ready")
    assert ready is not None and ready["reason"] == "InsufficientGPUs"
    assert len(pods_of(core, namespace, "batch")) == 2
    assert condition(get(custom, "LeptonTrainingJob", namespace, "batch"), "Preempted") is None
