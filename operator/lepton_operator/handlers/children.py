"""Children's changes flow back into their owner's status.

Status changes do not trigger Kopf's create/update handlers, so the operator watches the
children it manages (by label), their pods and their controllers' Events, and marks the owner
in the status refresh queue (services/status_refresh.py), which recomputes its status from
them: once for a burst of changes, from the child as the newest event carried it. A
PyTorchJob that went away while its job was unfinished (preempted, or deleted by hand) is made
again at once: the job's reconcile puts it back in the admission queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from lepton_operator import k8s
from lepton_operator.builders.meta import (
    MANAGED_BY,
    OWNER_ANNOTATION,
    OWNER_LABELS,
    owner_from_annotation,
)
from lepton_operator.builders.pytorchjob import PYTORCHJOB_API_VERSION
from lepton_operator.handlers.compression import reconcile_compression_body
from lepton_operator.handlers.context import fetch
from lepton_operator.handlers.endpoint import refresh_endpoint_status
from lepton_operator.handlers.jobs import refresh_compression_status, refresh_training_status
from lepton_operator.handlers.refresh import REFRESH, status_refresh_queue
from lepton_operator.handlers.training import reconcile_training_body
from lepton_operator.pod_problems import CreateEvent, pod_problem
from lepton_operator.scheduling.kueue import (
    JOB_KIND,
    WORKLOAD_GROUP,
    WORKLOAD_PLURAL,
    WORKLOAD_VERSION,
    workload_state,
)
from lepton_operator.scheduling.views import MetaView, controller_of
from lepton_operator.services.kueue_workloads import KUEUE_WORKLOADS
from lepton_operator.services.refused_pods import REFUSED_PODS, Outcome
from lepton_operator.services.status_refresh import OwnerKey
from lepton_operator.services.stuck_pods import STUCK_PODS
from lepton_operator.services.tuning_results import TUNING_RESULTS
from lepton_operator.tuning_reports import tuning_report

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
TRAINING, COMPRESSION = "LeptonTrainingJob", "LeptonCompression"
ENDPOINT_LABEL = OWNER_LABELS["LeptonEndpoint"]
REFRESH.update(
    {
        TRAINING: refresh_training_status,
        COMPRESSION: refresh_compression_status,
        "LeptonEndpoint": refresh_endpoint_status,
    }
)
RECONCILE: dict[str, Callable[[dict[str, Any]], None]] = {
    TRAINING: reconcile_training_body,
    COMPRESSION: reconcile_compression_body,
}


@kopf.on.event("kubeflow.org", "v1", "pytorchjobs", labels=MANAGED)
def pytorchjob_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    key = _owner_key(body, (TRAINING, COMPRESSION))
    if key is None or _just_created(type, body):
        return
    queue = status_refresh_queue()
    if type != "DELETED":
        queue.mark(key, dict(body))
        return
    found = fetch(*key)
    if found is not None and needs_its_pytorchjob(found):
        # Preempted, or deleted by hand: the job goes back to the admission queue (and a
        # training job resumes from its newest checkpoint once admitted again), which says
        # so in its status; a refresh from a copy of before the deletion must not follow.
        queue.discard(key)
        RECONCILE[key[0]](found)
    else:
        queue.mark(key, forget_child=True)  # a copy from before the deletion is not true


def _just_created(type: str | None, body: Mapping[str, Any]) -> bool:
    """A child just created, as the apply answered it: the reconcile (or the admission queue)
    that applied it publishes the owner's status from that answer. Objects listed when the
    operator starts come without a type, and are refreshed."""
    return type == "ADDED" and not body.get("status")


def _owner_key(body: Mapping[str, Any], kinds: tuple[str, ...]) -> OwnerKey | None:
    """The Lepton resource that controls this child, by its ownerReference (the owner label
    holds a shortened name when the owner's is long)."""
    meta = MetaView.model_validate(dict(body.get("metadata", {})))
    controller = controller_of(meta, kinds)
    if controller is None or not meta.namespace:
        return None
    kind, name = controller
    return kind, meta.namespace, name


def needs_its_pytorchjob(owner: dict[str, Any]) -> bool:
    """Unfinished and not being deleted: the job still has work for a PyTorchJob to do."""
    phase = (owner.get("status") or {}).get("phase")
    going = owner.get("metadata", {}).get("deletionTimestamp") is not None
    return not going and phase not in ("Succeeded", "Failed")


@kopf.on.event(WORKLOAD_GROUP, WORKLOAD_VERSION, WORKLOAD_PLURAL)
def workload_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Kueue's Workload of a PyTorchJob (`scheduling.queueName`): why it waits, or which
    queues admitted it, goes into the job's owner's status. Without Kueue's CRDs in the
    cluster Kopf serves nothing here."""
    state = workload_state(dict(body))
    if state is None:
        return
    job = (state.namespace, state.job_name)
    if not KUEUE_WORKLOADS.record(job, None if type == "DELETED" else state):
        return
    pytorchjob = k8s.get(PYTORCHJOB_API_VERSION, JOB_KIND, *job)
    key = _owner_key(pytorchjob, (TRAINING, COMPRESSION)) if pytorchjob is not None else None
    if key is not None:
        status_refresh_queue().mark(key, pytorchjob)


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED, ENDPOINT_LABEL: kopf.PRESENT})
def deployment_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    key = _owner_key(body, ("LeptonEndpoint",))
    if key is not None and not _just_created(type, body):
        deleted = type == "DELETED"
        status_refresh_queue().mark(key, None if deleted else dict(body), forget_child=deleted)


@kopf.on.event("", "v1", "pods", labels=MANAGED, annotations={OWNER_ANNOTATION: kopf.PRESENT})
def pod_changed(type: str | None, body: kopf.Body, **_: Any) -> None:
    """A pod that cannot start (a missing Secret, an image that cannot be pulled, a crash
    loop, no room) is reported in its owner's status, and cleared once it starts or goes."""
    meta = MetaView.model_validate(dict(body.get("metadata", {})))
    owner = owner_from_annotation(meta.annotations)
    if owner is None or not meta.namespace:
        return
    kind, name = owner
    key = (kind, meta.namespace, name)
    problem = None if type == "DELETED" else pod_problem(body)
    changed = STUCK_PODS.record(key, meta.name, problem)
    # An endpoint pod's package step reports what tuning measured and chose.
    report = tuning_report(body) if kind == "LeptonEndpoint" else None
    if report is not None:
        changed = TUNING_RESULTS.record(key, report) or changed
    if changed:
        status_refresh_queue().mark(key)


def _create_outcome(body: kopf.Body, **_: Any) -> bool:
    return CreateEvent.model_validate(dict(body)).is_create_outcome


@kopf.on.event("", "v1", "events", when=_create_outcome)
def create_outcome_seen(body: kopf.Body, **_: Any) -> None:
    """A controller created a child's pod, or the API server refused it (a Pod Security
    level, a quota): the refusal goes into the owner's status until a pod is created."""
    event = CreateEvent.model_validate(dict(body))
    involved = event.involved_object
    kind, namespace, name = involved.kind, involved.namespace, involved.name
    outcome = Outcome(event.at, event.refusal)
    if not REFUSED_PODS.record((kind, namespace, name), outcome):
        return
    if kind == "ReplicaSet":  # the endpoint's status looks it up by its Deployment
        deployment = _controller(k8s.get("apps/v1", "ReplicaSet", namespace, name), "Deployment")
        if deployment is None:
            return
        REFUSED_PODS.record(("Deployment", namespace, deployment), outcome)
        child = k8s.get("apps/v1", "Deployment", namespace, deployment)
        kinds: tuple[str, ...] = ("LeptonEndpoint",)
    else:
        child = k8s.get("kubeflow.org/v1", "PyTorchJob", namespace, name)
        kinds = (TRAINING, COMPRESSION)
    key = _owner_key(child, kinds) if child is not None else None
    if key is not None:
        status_refresh_queue().mark(key, child)


def _controller(obj: dict[str, Any] | None, kind: str) -> str | None:
    if obj is None:
        return None
    meta = MetaView.model_validate(dict(obj.get("metadata", {})))
    found = controller_of(meta, (kind,))
    return found[1] if found is not None else None
