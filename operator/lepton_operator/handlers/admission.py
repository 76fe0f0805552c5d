"""GPU admission from a handler's side: enqueue the job, or apply its children at once.

The queue (services/admission.py) is the one place that decides; this module turns a
resource's spec into a queue entry, and gives the queue the way to evict a preempted job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

import kopf

from lepton_operator import k8s
from lepton_operator.api.base import API_GROUP, API_VERSION, ObjectMeta
from lepton_operator.api.common import SchedulingSpec, WorkerResources
from lepton_operator.builders.meta import POOL_LABEL, stamp_priority
from lepton_operator.builders.pytorchjob import PYTORCHJOB_API_VERSION
from lepton_operator.handlers.context import settings
from lepton_operator.handlers.jobs import mark_preempted
from lepton_operator.observe import label_of
from lepton_operator.scheduling.admission import GangRequest
from lepton_operator.scheduling.placement import Placement, kept_placement, requested_placement
from lepton_operator.scheduling.preemption import RunningGang
from lepton_operator.scheduling.queue import QueuedGang, QueuedJob
from lepton_operator.scheduling.reservations import child_node_selector
from lepton_operator.scheduling.views import foreign_controller
from lepton_operator.services.admission import AdmissionQueue, QueueEntry
from lepton_operator.services.tuning_results import TUNING_RESULTS
from lepton_operator.status import Blocker

log = logging.getLogger(__name__)
PRIORITY_CLASS_API = "scheduling.k8s.io/v1"


@dataclass(frozen=True)
class Applied:
    """The children were applied now; `child` is the PyTorchJob or Deployment as the API server
    answered the apply (the status that follows is read from it, not fetched again)."""

    child: dict[str, Any]


Outcome = Applied | Literal["queued"] | Blocker


@cache
def admission_queue() -> AdmissionQueue:
    # Wall-clock seconds: jobs' waits are counted from their creationTimestamp.
    return AdmissionQueue(settings(), clock=time.time, evict=evict)


def queued_as(metadata: ObjectMeta, kind: str) -> QueuedJob:
    """A Lepton resource as it stands in the admission queue."""
    return QueuedJob(metadata.creation_timestamp, metadata.namespace, metadata.name, kind)


@dataclass(frozen=True)
class Ask:
    """What a Lepton resource asks admission for: `workers` pods of `gpus_per_worker` GPUs
    each, all made by one child (a PyTorchJob, or an endpoint's Deployment)."""

    child_api_version: str
    child_kind: str
    child_name: str
    workers: int
    gpus_per_worker: int
    gpu_type: str | None
    scheduling: SchedulingSpec


def job_ask(name: str, resources: WorkerResources, scheduling: SchedulingSpec) -> Ask:
    """A training or compression job: a PyTorchJob of `resources.workers` workers."""
    return Ask(
        PYTORCHJOB_API_VERSION, "PyTorchJob", name, resources.workers,
        resources.gpus_per_worker, resources.gpu_type, scheduling,
    )  # fmt: skip


def apply_when_admitted(
    job: QueuedJob,
    ask: Ask,
    *,
    owner_uid: str,
    render: Callable[[Placement], Iterable[dict[str, Any]]],
    report: Callable[[Blocker | None], None],
) -> Outcome:
    """Apply the job's children now (Applied), or put it in the admission queue ("queued");
    a Blocker when the API server refused a child (its message says why).

    A job whose child exists was admitted before and keeps its placement. CPU-only jobs and
    jobs that Kueue admits (scheduling.queueName) are not the operator's to admit. A queued
    job's children are applied by the queue's owner once it fits, and the owner publishes its
    status (`report`): why it waits, then, once admitted, its first status from the children.
    """
    config = settings()
    gpus, scheduling = ask.gpus_per_worker, ask.scheduling
    queue = admission_queue()

    def apply_all(placement: Placement, priority: int | None = None) -> Applied:
        child: dict[str, Any] = {}
        for manifest in render(placement):
            is_child = manifest.get("kind") == ask.child_kind
            if priority is not None and is_child:
                manifest = stamp_priority(manifest, priority)  # noqa: PLW2901 - the stamped copy
            applied = k8s.apply(manifest)
            if is_child:
                child = applied
        return Applied(child)

    requested = requested_placement(
        scheduling.node_pool, ask.gpu_type, gpus, config.pool_label, config.gpu_product_label
    )
    try:
        existing = k8s.get(ask.child_api_version, ask.child_kind, job.namespace, ask.child_name)
        foreign = foreign_controller(existing, owner_uid) if existing is not None else None
        if foreign is not None:
            # Applying would take it over (server-side apply adds our ownerReference), skip
            # admission, and leave its real owner with a changed object.
            return Blocker(
                "ChildConflict",
                f"a {ask.child_kind} named {ask.child_name!r} already exists in namespace "
                f"{job.namespace!r} and is not this resource's (its controller: {foreign}): "
                f"delete or rename it; Lepton does not take over objects it did not create",
            )
        if gpus == 0 or scheduling.queue_name is not None:
            return apply_all(requested)  # not the operator's to admit, nor to preempt
        # Only a job the operator admits needs its priority (a PriorityClass read).
        priority = _priority(scheduling.priority_class_name)
        if existing is not None:
            queue.forget(job)
            pool = label_of(existing, POOL_LABEL)
            return apply_all(kept_placement(pool, child_node_selector(existing), gpus), priority)
    except k8s.RejectedError as rejected:
        return Blocker("ChildrenRejected", f"the API server refused {rejected}")
    request = GangRequest(
        workers=ask.workers,
        gpus_per_worker=gpus,
        gpu_product=ask.gpu_type,
        pool=None if scheduling.node_pool == "auto" else scheduling.node_pool,
    )
    gang = QueuedGang(
        job,
        request,
        scheduling.policy,
        priority,
        # Waiting counts from creation, so an operator restart does not reset it.
        queued_at=datetime.fromisoformat(job.created).timestamp() if job.created else time.time(),
    )

    def start(placement: Placement) -> None:
        apply_all(placement, priority)
        report(None)

    queue.submit(
        QueueEntry(
            gang, ask.child_name, start, report, requested, gpu_type=ask.gpu_type,
            child_kind=ask.child_kind,
        )
    )  # fmt: skip
    return "queued"


def evict(victim: RunningGang, by: QueuedGang) -> None:
    """Preemption: say so in the victim's status, then delete its PyTorchJob (its pods go with
    it). The PyTorchJob's deletion puts the victim back in the queue (handlers/children.py)."""
    mark_preempted(victim.owner_kind, victim.namespace, victim.owner_name, by)
    k8s.delete(PYTORCHJOB_API_VERSION, "PyTorchJob", victim.namespace, victim.child)


def _priority(priority_class_name: str | None) -> int:
    """The value of the job's PriorityClass (0 without one, as kube-scheduler counts it)."""
    if priority_class_name is None:
        return 0
    try:
        found = k8s.get(PRIORITY_CLASS_API, "PriorityClass", None, priority_class_name)
    except k8s.ForbiddenError as refusal:
        log.warning("priority of %s unknown (%s): counted as 0", priority_class_name, refusal)
        return 0
    value = found.get("value") if found is not None else None
    return int(value) if isinstance(value, int) else 0


def _deleted(event: kopf.RawEvent, **_: Any) -> bool:
    return event.get("type") == "DELETED"


@kopf.on.event(API_GROUP, API_VERSION, "leptontrainingjobs", when=_deleted)
@kopf.on.event(API_GROUP, API_VERSION, "leptoncompressions", when=_deleted)
@kopf.on.event(API_GROUP, API_VERSION, "leptonendpoints", when=_deleted)
def forget_deleted(body: kopf.Body, **_: Any) -> None:
    """A deleted job leaves the queue (no finalizer needed: nothing outside the API server),
    and a deleted endpoint's tuning reports are dropped."""
    metadata = ObjectMeta.model_validate(dict(body.get("metadata", {})))
    kind = str(body.get("kind", ""))
    admission_queue().forget(queued_as(metadata, kind))
    if kind == "LeptonEndpoint":
        TUNING_RESULTS.forget((kind, metadata.namespace, metadata.name))
