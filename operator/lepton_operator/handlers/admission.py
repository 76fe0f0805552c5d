"""Admission of a training or compression job: list the cluster, let `scheduling/` decide.

The decision itself is pure (scheduling.admission); this module only gathers what it needs
and turns the outcome into a placement or a `Queued` blocker for the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from lepton_operator import k8s
from lepton_operator.api.base import GROUP_VERSION, ObjectMeta
from lepton_operator.api.common import SchedulingSpec, WorkerResources
from lepton_operator.builders.meta import MANAGED_BY, POOL_LABEL
from lepton_operator.builders.pytorchjob import PYTORCHJOB_API_VERSION
from lepton_operator.handlers.context import settings
from lepton_operator.metrics import ADMISSIONS, POOL_GPUS
from lepton_operator.observe import label_of
from lepton_operator.scheduling.admission import Admitted, GangRequest, Reservation, admit
from lepton_operator.scheduling.inventory import GpuNode, InventoryLabels, build_inventory
from lepton_operator.scheduling.placement import (
    Placement,
    kept_placement,
    pool_placement,
    requested_placement,
)
from lepton_operator.scheduling.queue import QueuedJob, queue_position, queued_jobs
from lepton_operator.scheduling.reservations import job_node_selector, reservations_from
from lepton_operator.scheduling.views import PodView
from lepton_operator.settings import POOL_LABEL_FALLBACKS
from lepton_operator.status import Blocker

log = logging.getLogger(__name__)
FORBIDDEN = 403
ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


def apply_when_admitted(
    waiting_job: QueuedJob,
    job_name: str,
    resources: WorkerResources,
    scheduling: SchedulingSpec,
    render: Callable[[Placement], Iterable[dict[str, Any]]],
) -> Blocker | None:
    """Apply a job's children where admission places them; the Queued blocker if it waits.

    `waiting_job` is the Lepton resource as it would stand in the queue.
    """
    namespace = waiting_job.namespace
    existing = k8s.get(PYTORCHJOB_API_VERSION, "PyTorchJob", namespace, job_name)
    placement = place_job(existing, resources, scheduling)
    if isinstance(placement, Blocker):
        if placement.phase != "Queued":
            return placement
        position, length = queue_position(_queued_jobs(), waiting_job)
        return replace(
            placement, message=f"{placement.message} (number {position} of {length} queued)"
        )
    for manifest in render(placement):
        k8s.apply(manifest)
    return None


def place_job(
    existing: dict[str, Any] | None, resources: WorkerResources, scheduling: SchedulingSpec
) -> Placement | Blocker:
    """Where the job's PyTorchJob goes, or why it waits in the queue.

    A job whose PyTorchJob exists was admitted before and keeps its placement. CPU-only jobs
    and jobs that Kueue admits (scheduling.queueName) are not the operator's to admit.
    """
    config = settings()
    gpus = resources.gpus_per_worker
    if existing is not None:
        return kept_placement(label_of(existing, POOL_LABEL), job_node_selector(existing), gpus)
    requested = requested_placement(
        scheduling.node_pool,
        resources.gpu_type,
        gpus,
        config.pool_label,
        config.gpu_product_label,
    )
    if gpus == 0 or scheduling.queue_name is not None:
        return requested
    try:
        inventory, reservations = _cluster_state()
    except ApiException as error:
        if error.status != FORBIDDEN:
            raise
        # Without read access to nodes and pods there is no inventory: kube-scheduler alone
        # places the job, and the log says why.
        log.warning("cannot list nodes or pods (%s): GPU admission is off", error.reason)
        return requested
    if not inventory:
        return requested  # no node names a pool: nothing to choose between
    _export_pool_metrics(inventory)
    decision = admit(
        GangRequest(
            workers=resources.workers,
            gpus_per_worker=gpus,
            gpu_product=resources.gpu_type,
            pool=None if scheduling.node_pool == "auto" else scheduling.node_pool,
        ),
        inventory,
        reservations,
        scheduling.policy,
    )
    if isinstance(decision, Admitted):
        ADMISSIONS.labels(outcome="Admitted").inc()
        return pool_placement(
            decision.pool,
            decision.pool_label,
            resources.gpu_type,
            gpus,
            config.gpu_product_label,
        )
    ADMISSIONS.labels(outcome=decision.reason).inc()
    return Blocker(decision.reason, decision.message, phase="Queued")


def queued_as(metadata: ObjectMeta, kind: str) -> QueuedJob:
    """A Lepton resource as it stands in the admission queue."""
    return QueuedJob(metadata.creation_timestamp, metadata.namespace, metadata.name, kind)


def _list_watched(api_version: str, kind: str, label_selector: str = "") -> list[dict[str, Any]]:
    """Objects in the namespaces the operator serves (its RBAC may reach no further)."""
    namespaces = settings().namespaces
    if not namespaces:
        return k8s.list_all_namespaces(api_version, kind, label_selector)
    return [
        item
        for namespace in namespaces
        for item in k8s.list_objects(api_version, kind, namespace, label_selector)
    ]


def _queued_jobs() -> list[QueuedJob]:
    return [
        job
        for kind in ("LeptonTrainingJob", "LeptonCompression")
        for job in queued_jobs(_list_watched(GROUP_VERSION, kind), kind)
    ]


def _cluster_state() -> tuple[list[GpuNode], list[Reservation]]:
    config = settings()
    labels = InventoryLabels(
        pool_labels=(config.pool_label, *POOL_LABEL_FALLBACKS),
        gpu_product_label=config.gpu_product_label,
        gpu_resource=config.gpu_resource,
    )
    nodes = k8s.list_all_namespaces("v1", "Node")
    # Parsed once: the inventory and the reservations both read every pod.
    pods = [
        PodView.model_validate(pod)
        for pod in k8s.list_all_namespaces("v1", "Pod", field_selector=ACTIVE_PODS)
    ]
    inventory = build_inventory(nodes, pods, labels)
    selector = f"app.kubernetes.io/managed-by={MANAGED_BY},{POOL_LABEL}"
    jobs = _list_watched(PYTORCHJOB_API_VERSION, "PyTorchJob", selector)
    reservations = reservations_from(
        jobs, pods, POOL_LABEL, config.gpu_product_label, config.gpu_resource
    )
    return inventory, reservations


def _export_pool_metrics(inventory: list[GpuNode]) -> None:
    totals: dict[tuple[str, str], list[int]] = {}
    for node in inventory:
        entry = totals.setdefault((node.pool, node.gpu_product or ""), [0, 0])
        entry[0] += node.allocatable
        entry[1] += min(node.used, node.allocatable)
    for (pool, product), (capacity, allocated) in totals.items():
        POOL_GPUS.labels(pool=pool, gpu_product=product, state="capacity").set(capacity)
        POOL_GPUS.labels(pool=pool, gpu_product=product, state="allocated").set(allocated)
