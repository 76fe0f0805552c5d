"""What Kueue says about a job it admits (`scheduling.queueName`), read from its Workload.

Kueue makes one Workload per suspended PyTorchJob that names a LocalQueue, reserves quota for
it in a ClusterQueue, and then unsuspends the job. The operator does not admit such jobs; it
reports Kueue's decision: while the Workload waits, the job is Queued with Kueue's own reason;
once admitted, `status.queueAdmission` says which queues admitted it and how long it waited.
Pure: the Workload watch (handlers/kueue.py) parses here and keeps the result in
services/kueue_workloads.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from lepton_operator.api.common import QueueAdmission
from lepton_operator.scheduling.views import MetaView, View, controller_of
from lepton_operator.status import Blocker

WORKLOAD_GROUP, WORKLOAD_VERSION, WORKLOAD_PLURAL = "kueue.x-k8s.io", "v1beta2", "workloads"
# The one kind of job Lepton hands to Kueue.
JOB_KIND = "PyTorchJob"


class _ConditionView(View):
    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


class _AdmissionView(View):
    cluster_queue: str = ""


class _WorkloadStatusView(View):
    admission: _AdmissionView | None = None
    conditions: list[_ConditionView] = Field(default_factory=list)


class _WorkloadSpecView(View):
    queue_name: str = ""


class _WorkloadView(View):
    metadata: MetaView = Field(default_factory=MetaView)
    spec: _WorkloadSpecView = Field(default_factory=_WorkloadSpecView)
    status: _WorkloadStatusView = Field(default_factory=_WorkloadStatusView)


@dataclass(frozen=True)
class WorkloadState:
    """One Workload, as far as the job's status cares."""

    namespace: str
    job_name: str  # the PyTorchJob it belongs to
    local_queue: str
    cluster_queue: str | None
    created_at: datetime | None
    admitted_at: datetime | None  # quota reserved (Kueue unsuspends the job then)
    reason: str
    message: str


def _condition(status: _WorkloadStatusView, type_: str) -> _ConditionView | None:
    return next((c for c in status.conditions if c.type == type_), None)


def workload_state(body: dict[str, Any]) -> WorkloadState | None:
    """The Workload's state, when a PyTorchJob controls it; None for anyone else's."""
    workload = _WorkloadView.model_validate(body)
    meta = workload.metadata
    owner = controller_of(meta, (JOB_KIND,))
    if owner is None or not meta.namespace:
        return None
    reserved = _condition(workload.status, "QuotaReserved")
    admitted = reserved is not None and reserved.status == "True"
    created = datetime.fromisoformat(meta.creation_timestamp) if meta.creation_timestamp else None
    return WorkloadState(
        namespace=meta.namespace,
        job_name=owner[1],
        local_queue=workload.spec.queue_name,
        cluster_queue=workload.status.admission.cluster_queue
        if workload.status.admission
        else None,
        created_at=created,
        admitted_at=reserved.last_transition_time if admitted and reserved else None,
        reason=reserved.reason if reserved else "",
        message=reserved.message if reserved else "",
    )


def queue_admission(state: WorkloadState | None) -> QueueAdmission | None:
    """Which queues admitted the job and how long it waited; None until Kueue admits it."""
    if state is None or state.admitted_at is None:
        return None
    waited = None
    if state.created_at is not None:
        waited = max(0, round((state.admitted_at - state.created_at).total_seconds()))
    return QueueAdmission(
        local_queue=state.local_queue,
        cluster_queue=state.cluster_queue,
        admitted_at=state.admitted_at,
        waited_seconds=waited,
    )


def kueue_blocker(queue_name: str, state: WorkloadState | None) -> Blocker | None:
    """Why a Kueue job waits, in Kueue's words; None once Kueue admitted it."""
    if state is None:
        return Blocker(
            "WaitingForKueue",
            f"waiting for Kueue to make a Workload for LocalQueue {queue_name!r} (is Kueue "
            "running, with the PyTorchJob integration on, and does the LocalQueue exist?)",
            phase="Queued",
        )
    if state.admitted_at is not None:
        return None
    said = state.message or "no quota reserved yet"
    return Blocker(state.reason or "Pending", f"Kueue: {said}", phase="Queued")


class _RunPolicyView(View):
    suspend: bool = False


class _PyTorchJobSpecView(View):
    run_policy: _RunPolicyView = Field(default_factory=_RunPolicyView)


class _PyTorchJobView(View):
    spec: _PyTorchJobSpecView = Field(default_factory=_PyTorchJobSpecView)


def waits_for_kueue(pytorchjob: dict[str, Any] | None) -> bool:
    """Not made yet, or suspended: Kueue has not let it start (or took it back)."""
    if pytorchjob is None:
        return True
    return _PyTorchJobView.model_validate(pytorchjob).spec.run_policy.suspend


@dataclass(frozen=True)
class KueueDecision:
    """What a job that names a LocalQueue reports: why it waits, or what admitted it."""

    blocker: Blocker | None
    admission: QueueAdmission | None


def kueue_decision(
    queue_name: str,
    pytorchjob: dict[str, Any] | None,
    state: WorkloadState | None,
    previous: QueueAdmission | None,
) -> KueueDecision:
    """Queued with Kueue's reason while its PyTorchJob is missing or suspended and Kueue has
    not admitted it; otherwise the queues that admitted it. A finished Workload gives its
    quota back: what admitted the job then stays as the status had it."""
    if waits_for_kueue(pytorchjob):
        waiting = kueue_blocker(queue_name, state)
        if waiting is not None:
            return KueueDecision(waiting, None)
    return KueueDecision(None, queue_admission(state) or previous)
