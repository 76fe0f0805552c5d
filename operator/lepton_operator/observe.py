"""Typed views of the children's status, and the observations status.py works from.

Children arrive as plain dicts from the API server; parsing them here, through small
pydantic views that ignore what Lepton does not read, keeps `.get()` chains out of the
handlers and lets status derivation stay pure.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from lepton_operator.builders.meta import POOL_LABEL
from lepton_operator.status import (
    Blocker,
    DeploymentObservation,
    JobObservation,
    ObservedCondition,
)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _ConditionView(_View):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None

    def observed(self) -> ObservedCondition:
        return ObservedCondition(self.type, self.status, self.reason or "", self.message or "")


class _ReplicaStatusView(_View):
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class _PyTorchJobStatusView(_View):
    conditions: list[_ConditionView] = Field(default_factory=list)
    replica_statuses: dict[str, _ReplicaStatusView] = Field(default_factory=dict)
    start_time: datetime | None = None
    completion_time: datetime | None = None


class _TerminatedView(_View):
    exit_code: int = 0
    message: str | None = None


class _ContainerStateView(_View):
    terminated: _TerminatedView | None = None


class _ContainerStatusView(_View):
    name: str
    state: _ContainerStateView = Field(default_factory=_ContainerStateView)
    last_state: _ContainerStateView = Field(default_factory=_ContainerStateView)


class _PodStatusView(_View):
    container_statuses: list[_ContainerStatusView] = Field(default_factory=list)
    init_container_statuses: list[_ContainerStatusView] = Field(default_factory=list)


class _DeploymentSpecView(_View):
    replicas: int = 1


class _DeploymentStatusView(_View):
    observed_generation: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    conditions: list[_ConditionView] = Field(default_factory=list)


def _section(obj: dict[str, Any] | None, key: str) -> dict[str, Any]:
    value = (obj or {}).get(key)
    return value if isinstance(value, dict) else {}


def termination_message(pod: dict[str, Any] | None, container: str) -> str | None:
    """What a container wrote to its termination-message path when it last ended."""
    status = _PodStatusView.model_validate(_section(pod, "status"))
    for entry in [*status.container_statuses, *status.init_container_statuses]:
        if entry.name != container:
            continue
        for state in (entry.state, entry.last_state):
            if state.terminated is not None and state.terminated.message:
                return state.terminated.message.strip()
    return None


def observe_pytorchjob(
    pytorchjob: dict[str, Any] | None,
    failure_message: str | None,
    blocker: Blocker | None,
    stuck_pod: Blocker | None = None,
) -> JobObservation:
    if blocker is not None:
        return JobObservation(blocker=blocker)
    if pytorchjob is None:
        return JobObservation()
    status = _PyTorchJobStatusView.model_validate(_section(pytorchjob, "status"))
    return JobObservation(
        pytorchjob_exists=True,
        pool=label_of(pytorchjob, POOL_LABEL),
        pytorchjob_conditions=tuple(c.observed() for c in status.conditions),
        active_workers=sum(r.active for r in status.replica_statuses.values()),
        start_time=status.start_time,
        completion_time=status.completion_time,
        failure_message=failure_message,
        stuck_pod=stuck_pod,
    )


def observe_deployment(
    deployment: dict[str, Any] | None, blocker: Blocker | None, stuck_pod: Blocker | None = None
) -> DeploymentObservation:
    if blocker is not None:
        return DeploymentObservation(blocker=blocker)
    if deployment is None:
        return DeploymentObservation()
    spec = _DeploymentSpecView.model_validate(_section(deployment, "spec"))
    status = _DeploymentStatusView.model_validate(_section(deployment, "status"))
    generation = int(_section(deployment, "metadata").get("generation", 0))
    return DeploymentObservation(
        exists=True,
        pool=label_of(deployment, POOL_LABEL),
        desired_replicas=spec.replicas,
        ready_replicas=status.ready_replicas,
        updated_replicas=status.updated_replicas,
        generation_observed=status.observed_generation >= generation,
        conditions=tuple(c.observed() for c in status.conditions),
        stuck_pod=stuck_pod,
    )


class _MetadataView(_View):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


def pytorchjob_finished(pytorchjob: dict[str, Any] | None) -> bool:
    """Whether the job has ended, so that its pods hold their final termination messages."""
    status = _PyTorchJobStatusView.model_validate(_section(pytorchjob, "status"))
    return any(c.type in ("Succeeded", "Failed") and c.status == "True" for c in status.conditions)


def label_of(obj: dict[str, Any] | None, key: str) -> str | None:
    return _MetadataView.model_validate(_section(obj, "metadata")).labels.get(key)


def first_replica_message(pods: list[dict[str, Any]], container: str) -> str | None:
    """The termination message of the job's first replica (the master, else worker 0):
    the runtime writes its summary there, and a failure's one-line reason."""

    def rank(pod: dict[str, Any]) -> tuple[int, str]:
        labels = _MetadataView.model_validate(_section(pod, "metadata")).labels
        is_master = labels.get("training.kubeflow.org/replica-type", "").lower() == "master"
        return (0 if is_master else 1, labels.get("training.kubeflow.org/replica-index", ""))

    for pod in sorted(pods, key=rank):
        message = termination_message(pod, container)
        if message:
            return message
    return None
