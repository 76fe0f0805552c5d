"""Reservations from the cluster: what admitted Lepton jobs still hold before their pods bind.

Rebuilt from the PyTorchJobs on every admission, never kept in memory, so a restarted
operator sees exactly what the one before it admitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field

from lepton_operator.scheduling.admission import Reservation
from lepton_operator.scheduling.views import MetaView, PodView, View

# The training operator labels each pod with the name of its job.
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
FINISHED_CONDITIONS = frozenset({"Succeeded", "Failed"})


class _ReplicaSpec(View):
    replicas: int = 1
    template: dict[str, Any] = Field(default_factory=dict)


class _RunPolicy(View):
    suspend: bool = False


class _Spec(View):
    pytorch_replica_specs: dict[str, _ReplicaSpec] = Field(default_factory=dict)
    run_policy: _RunPolicy = Field(default_factory=_RunPolicy)


class _Condition(View):
    type: str
    status: str


class _Status(View):
    conditions: list[_Condition] = Field(default_factory=list)


class _PyTorchJob(View):
    metadata: MetaView = Field(default_factory=MetaView)
    spec: _Spec = Field(default_factory=_Spec)
    status: _Status = Field(default_factory=_Status)


def reservations_from(
    pytorchjobs: Iterable[dict[str, Any]],
    pods: Iterable[PodView],
    pool_label: str,
    gpu_product_label: str,
    gpu_resource: str = "nvidia.com/gpu",
) -> list[Reservation]:
    """One reservation per admitted, unfinished job with workers not yet bound to a node:
    its pods that wait for a node, and, before it first ran, the pods not created yet.

    `pool_label` is the label Lepton puts on its PyTorchJobs once admitted; jobs without it
    were not placed by admission and reserve nothing.
    """
    bound: dict[tuple[str, str], int] = {}
    waiting: dict[tuple[str, str], int] = {}
    for pod in pods:
        job_name = pod.metadata.labels.get(JOB_NAME_LABEL)
        if job_name is None or pod.finished:
            continue
        counts = bound if pod.bound_and_active else waiting
        key = (pod.metadata.namespace, job_name)
        counts[key] = counts.get(key, 0) + 1
    reservations = []
    for raw in pytorchjobs:
        job = _PyTorchJob.model_validate(raw)
        pool = job.metadata.labels.get(pool_label)
        true_conditions = {c.type for c in job.status.conditions if c.status == "True"}
        # A job being deleted (its namespace too, maybe) makes no new pods: it holds nothing.
        going = job.metadata.deletion_timestamp is not None
        if pool is None or true_conditions & FINISHED_CONDITIONS or going:
            continue
        if job.spec.run_policy.suspend:
            continue
        replicas = job.spec.pytorch_replica_specs.values()
        key = (job.metadata.namespace, job.metadata.name)
        # Pods not created yet count only until the job first ran: after that a missing pod
        # is one that was deleted (with its namespace, say), not one about to be created.
        not_created = 0
        if "Running" not in true_conditions:
            created = bound.get(key, 0) + waiting.get(key, 0)
            not_created = max(sum(spec.replicas for spec in replicas) - created, 0)
        unbound = waiting.get(key, 0) + not_created
        if unbound <= 0 or not replicas:
            continue
        template = PodView.model_validate(next(iter(replicas)).template)
        reservations.append(
            Reservation(
                pool=pool,
                workers=unbound,
                gpus_per_worker=template.gpus(gpu_resource),
                gpu_product=template.spec.node_selector.get(gpu_product_label),
            )
        )
    return sorted(reservations, key=lambda r: (r.pool, -r.gpus_per_worker, r.workers))


def job_node_selector(pytorchjob: dict[str, Any]) -> dict[str, str]:
    """The nodeSelector a PyTorchJob's pods were given (the master's; all replicas share it)."""
    specs = _PyTorchJob.model_validate(pytorchjob).spec.pytorch_replica_specs
    replica = specs.get("Master") or next(iter(specs.values()), None)
    if replica is None:
        return {}
    return dict(PodView.model_validate(replica.template).spec.node_selector)
