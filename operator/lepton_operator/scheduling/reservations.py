"""What admitted Lepton jobs hold, read from the cluster: reservations for their workers not
bound yet, and (for preemption) the whole of what each running job holds.

Rebuilt from the PyTorchJobs on every admission, never kept in memory, so a restarted
operator sees exactly what the one before it admitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import Field

from lepton_operator.builders.meta import OWNER_LABELS, PRIORITY_ANNOTATION
from lepton_operator.scheduling.admission import Reservation
from lepton_operator.scheduling.preemption import RunningGang
from lepton_operator.scheduling.views import MetaView, PodView, View, controller_of

# The training operator labels each pod with the name of its job.
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
FINISHED_CONDITIONS = frozenset({"Succeeded", "Failed"})


class _ReplicaSpec(View):
    replicas: int = 1
    # Parsed to what admission reads (resources, node selector): a worker's whole template
    # (env, volumes, the runtime's config) held for every PyTorchJob was most of the view.
    template: PodView = Field(default_factory=PodView)


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


class PyTorchJobView(View):
    """What reservations and preemption read of a PyTorchJob (the admission view keeps these)."""

    metadata: MetaView = Field(default_factory=MetaView)
    spec: _Spec = Field(default_factory=_Spec)
    status: _Status = Field(default_factory=_Status)

    def gpus(self, gpu_resource: str = "nvidia.com/gpu") -> int:
        """GPUs its workers ask for in all (0: a CPU-only job, nothing to admit or reserve)."""
        replicas = self.spec.pytorch_replica_specs.values()
        return sum(spec.replicas * spec.template.gpus(gpu_resource) for spec in replicas)


ViewT = TypeVar("ViewT", bound=View)


def _parsed(view: type[ViewT], raw: dict[str, Any] | ViewT) -> ViewT:
    """Objects as listed (dicts) or as the admission view keeps them (parsed once)."""
    return raw if isinstance(raw, view) else view.model_validate(raw)


def reservations_from(
    pytorchjobs: Iterable[dict[str, Any] | PyTorchJobView],
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
        job = _parsed(PyTorchJobView, raw)
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
        template = next(iter(replicas)).template
        reservations.append(
            Reservation(
                pool=pool,
                workers=unbound,
                gpus_per_worker=template.gpus(gpu_resource),
                gpu_product=template.spec.node_selector.get(gpu_product_label),
                namespace=job.metadata.namespace,
                job=job.metadata.name,
            )
        )
    return sorted(reservations, key=lambda r: (r.pool, -r.gpus_per_worker, r.workers))


class _DeploymentSpec(View):
    replicas: int = 1
    template: PodView = Field(default_factory=PodView)


class DeploymentView(View):
    """What reservations read of an endpoint's Deployment (the admission view keeps these)."""

    metadata: MetaView = Field(default_factory=MetaView)
    spec: _DeploymentSpec = Field(default_factory=_DeploymentSpec)


ENDPOINT_LABEL = OWNER_LABELS["LeptonEndpoint"]
JOB_KINDS = ("LeptonTrainingJob", "LeptonCompression")


def deployment_reservations(
    deployments: Iterable[dict[str, Any] | DeploymentView],
    pods: Iterable[PodView],
    pool_label: str,
    gpu_product_label: str,
    gpu_resource: str = "nvidia.com/gpu",
) -> list[Reservation]:
    """One reservation per admitted endpoint Deployment with replicas not bound to a node:
    its desired replicas less those bound (Deployments make their pods at once, and make
    them again when one goes, so a missing replica is one about to be created)."""
    bound: dict[tuple[str, str], int] = {}
    for pod in pods:
        owner = pod.metadata.labels.get(ENDPOINT_LABEL)
        if owner is not None and pod.bound_and_active:
            key = (pod.metadata.namespace, owner)
            bound[key] = bound.get(key, 0) + 1
    reservations = []
    for raw in deployments:
        deployment = _parsed(DeploymentView, raw)
        meta = deployment.metadata
        pool, owner = meta.labels.get(pool_label), meta.labels.get(ENDPOINT_LABEL)
        if pool is None or owner is None or meta.deletion_timestamp is not None:
            continue
        template = deployment.spec.template
        unbound = deployment.spec.replicas - bound.get((meta.namespace, owner), 0)
        gpus = template.gpus(gpu_resource)
        if unbound <= 0 or gpus <= 0:
            continue
        reservations.append(
            Reservation(
                pool=pool,
                workers=unbound,
                gpus_per_worker=gpus,
                gpu_product=template.spec.node_selector.get(gpu_product_label),
                namespace=meta.namespace,
                job=meta.name,
            )
        )
    return reservations


def _priority(annotations: dict[str, str]) -> int:
    try:
        return int(annotations.get(PRIORITY_ANNOTATION, "0"))
    except ValueError:
        return 0


def running_gangs(
    pytorchjobs: Iterable[dict[str, Any] | PyTorchJobView],
    pods: Iterable[PodView],
    reservations: Iterable[Reservation],
    pool_label: str,
    gpu_resource: str = "nvidia.com/gpu",
) -> list[RunningGang]:
    """Every admitted, unfinished Lepton job with what it holds: the GPUs of its bound pods
    per node and its reservation (from `reservations_from`, matched by job)."""
    held: dict[tuple[str, str], dict[str, int]] = {}
    for pod in pods:
        job_name = pod.metadata.labels.get(JOB_NAME_LABEL)
        if job_name is None or not pod.bound_and_active:
            continue
        nodes = held.setdefault((pod.metadata.namespace, job_name), {})
        node = pod.spec.node_name or ""
        nodes[node] = nodes.get(node, 0) + pod.gpus(gpu_resource)
    reserved = {(r.namespace, r.job): r for r in reservations if r.job is not None}
    gangs = []
    for raw in pytorchjobs:
        job = _parsed(PyTorchJobView, raw)
        meta = job.metadata
        pool = meta.labels.get(pool_label)
        owner = controller_of(meta, JOB_KINDS)  # not the label: it may be a shortened name
        finished = {c.type for c in job.status.conditions if c.status == "True"}
        if pool is None or owner is None or finished & FINISHED_CONDITIONS:
            continue
        if meta.deletion_timestamp is not None:
            continue  # already going: evicting it again frees nothing more
        key = (meta.namespace, meta.name)
        nodes = held.get(key, {})
        reservation = reserved.get(key)
        if not nodes and reservation is None:
            continue
        gangs.append(
            RunningGang(
                namespace=meta.namespace,
                child=meta.name,
                owner_kind=owner[0],
                owner_name=owner[1],
                priority=_priority(meta.annotations),
                created=meta.creation_timestamp,
                pool=pool,
                held=tuple(sorted(nodes.items())),
                reserved=reservation,
            )
        )
    return gangs


def child_node_selector(child: dict[str, Any]) -> dict[str, str]:
    """The nodeSelector a child's pods were given: a PyTorchJob's master's (all replicas
    share it), or a Deployment's template's."""
    if child.get("kind") == "Deployment":
        return dict(DeploymentView.model_validate(child).spec.template.spec.node_selector)
    specs = PyTorchJobView.model_validate(child).spec.pytorch_replica_specs
    replica = specs.get("Master") or next(iter(specs.values()), None)
    if replica is None:
        return {}
    return dict(replica.template.spec.node_selector)
