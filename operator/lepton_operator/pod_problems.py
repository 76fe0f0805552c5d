"""Why a child's pod cannot start, read from the pod's own state, in words for the user.

The operator reads no Secrets: a missing credentials Secret, an image that cannot be pulled or
a container that keeps crashing shows up where the kubelet and the scheduler report it, in the
pod's status (a container's waiting reason and message, the PodScheduled condition). This
module turns that report into a `Blocker` whose message names the field to fix. Pure: the
handlers watch the pods (handlers/children.py) and keep what this finds in
services/pod_problems.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from lepton_operator.status import Blocker

# The kubelet's waiting reasons that no wait cures: the user has to change something. Others
# (ContainerCreating, PodInitializing) are the normal way up.
STUCK_REASONS = frozenset(
    {
        "CreateContainerConfigError",  # a Secret, ConfigMap or key that envFrom/env names
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "RunContainerError",
    }
)
IMAGE_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
# The kubelet's message for a missing Secret, e.g. `secret "s3-creds" not found`.
_MISSING_SECRET = re.compile(r'secrets? "([^"]+)" not found')
# The scheduler's, for a missing claim: `persistentvolumeclaim "data" not found`.
_MISSING_CLAIM = re.compile(r'persistentvolumeclaims? "([^"]+)" not found')


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class _Waiting(_View):
    reason: str = ""
    message: str = ""


class _Terminated(_View):
    exit_code: int = -1
    message: str = ""


class _State(_View):
    waiting: _Waiting | None = None
    terminated: _Terminated | None = None


class _ContainerStatus(_View):
    name: str
    state: _State = Field(default_factory=_State)


class _Condition(_View):
    type: str
    status: str
    reason: str = ""
    message: str = ""


class PodContainersView(_View):
    """A pod's phase, conditions and container states (waiting or terminated)."""

    phase: str = ""
    conditions: list[_Condition] = Field(default_factory=list)
    init_container_statuses: list[_ContainerStatus] = Field(default_factory=list)
    container_statuses: list[_ContainerStatus] = Field(default_factory=list)


@dataclass(frozen=True)
class PodProblem:
    """One pod's reason not to start, as the kubelet or the scheduler said it."""

    pod: str
    reason: str  # the waiting reason, or "Unschedulable"
    detail: str  # the kubelet's or scheduler's message
    container: str = ""  # empty when the pod was never scheduled


def pod_problem(pod: Mapping[str, Any]) -> PodProblem | None:
    """The first thing that keeps this pod from running, or None (starting, running, done)."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    status = PodContainersView.model_validate(pod.get("status") or {})
    if status.phase in ("Succeeded", "Failed"):
        return None
    # Init containers run first: while one is stuck, the others never get a state.
    for container in [*status.init_container_statuses, *status.container_statuses]:
        waiting = container.state.waiting
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return PodProblem(name, waiting.reason, waiting.message, container.name)
    for condition in status.conditions:
        unschedulable = condition.status == "False" and condition.reason == "Unschedulable"
        if condition.type == "PodScheduled" and unschedulable:
            return PodProblem(name, "Unschedulable", condition.message)
    return None


def explain(
    problem: PodProblem,
    namespace: str,
    secret_fields: Mapping[str, str],
    other_secrets: str = "the secretRef that names it",
) -> Blocker:
    """The status a pod's problem gives its owner: what is wrong and what to change.

    `secret_fields` names, for each Secret the owner's spec refers to, the field that does;
    `other_secrets` says where any other one comes from (a source's spec).
    """
    where = f"pod {problem.pod}" + (f", container {problem.container}" if problem.container else "")
    secret = _MISSING_SECRET.search(problem.detail)
    if problem.reason == "CreateContainerConfigError" and secret is not None:
        name = secret.group(1)
        field = secret_fields.get(name, other_secrets)
        return Blocker(
            "SecretNotFound",
            f"Secret {name!r} does not exist in namespace {namespace!r} ({where} cannot "
            f"start): create it or change {field}",
        )
    claim = _MISSING_CLAIM.search(problem.detail)
    if problem.reason == "Unschedulable" and claim is not None:
        return Blocker(
            "VolumeNotFound",
            f"PersistentVolumeClaim {claim.group(1)!r} does not exist in namespace "
            f"{namespace!r} ({where} cannot be scheduled): create it or change the pvc:// URI",
        )
    if problem.reason in IMAGE_REASONS:
        fix = "check the image setting, that the registry is reachable and the pull secrets"
    elif problem.reason == "CrashLoopBackOff":
        fix = f"see `kubectl logs -n {namespace} {problem.pod} -c {problem.container} --previous`"
    elif problem.reason == "Unschedulable":
        fix = "free or add the capacity it asks for, or lower spec.resources"
    else:
        fix = f"see `kubectl describe pod -n {namespace} {problem.pod}`"
    detail = f": {problem.detail}" if problem.detail else ""
    return Blocker(problem.reason, f"{where}: {problem.reason}{detail}; {fix}")


# The controllers' Events about a pod they could not create: the pod never exists, so only
# the Event says why (a Pod Security level, a ResourceQuota, a LimitRange, a webhook).
CREATE_OUTCOMES = {
    "PyTorchJob": ("SuccessfulCreatePod", "FailedCreatePod"),  # the training operator
    "ReplicaSet": ("SuccessfulCreate", "FailedCreate"),  # the Deployment's ReplicaSet
}


class _InvolvedObject(_View):
    kind: str = ""
    namespace: str = ""
    name: str = ""


class _EventMeta(_View):
    creation_timestamp: datetime | None = None


class CreateEvent(_View):
    """A controller's Event about creating a child's pod (core/v1 Event)."""

    involved_object: _InvolvedObject = Field(default_factory=_InvolvedObject)
    reason: str = ""
    message: str = ""
    last_timestamp: datetime | None = None  # core/v1 Events; newer ones carry eventTime
    event_time: datetime | None = None
    metadata: _EventMeta = Field(default_factory=_EventMeta)

    @property
    def is_create_outcome(self) -> bool:
        return self.reason in CREATE_OUTCOMES.get(self.involved_object.kind, ())

    @property
    def refusal(self) -> str | None:
        """The API server's message when the pod was refused; None when it was created."""
        failure = CREATE_OUTCOMES[self.involved_object.kind][1]
        return self.message if self.reason == failure else None

    @property
    def at(self) -> datetime:
        """When it last happened."""
        when = self.last_timestamp or self.event_time or self.metadata.creation_timestamp
        return when or datetime.now(UTC)


def explain_refusal(message: str) -> Blocker:
    """The status of a resource whose pods the API server refuses to create."""
    if "violates PodSecurity" in message:
        reason = "PodSecurityViolation"
        fix = (
            "the namespace's Pod Security level refuses these pods; see "
            "docs/install.md, Restricted namespaces"
        )
    elif "exceeded quota" in message:
        reason = "QuotaExceeded"
        fix = "raise the namespace's ResourceQuota or lower spec.resources"
    else:
        reason = "PodsRefused"
        fix = "see the Events of the namespace"
    return Blocker(reason, f"pods cannot be created: {message}; {fix}")
