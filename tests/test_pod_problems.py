"""Pods that cannot start, read from their own state (the operator reads no Secrets).

The pod statuses are the shape the kubelet and kube-scheduler write: a container's `waiting`
reason and message, the PodScheduled condition.
"""

from __future__ import annotations

from typing import Any

import pytest

from lepton_operator.builders.meta import OWNER_ANNOTATION, owner_from_annotation
from lepton_operator.pod_problems import (
    CreateEvent,
    PodProblem,
    explain,
    explain_refusal,
    pod_problem,
)
from lepton_operator.services.refused_pods import Outcome, RefusedPods
from lepton_operator.services.stuck_pods import StuckPods
from lepton_operator.status import (
    DeploymentObservation,
    JobObservation,
    ObservedCondition,
    derive_endpoint_core,
    derive_job_core,
)
from tests.test_status import T0


def pod(status: dict[str, Any], name: str = "mnist-worker-0") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml"}, "status": status}


def waiting(reason: str, message: str = "", *, init: bool = False) -> dict[str, Any]:
    entry = {"name": "trainer", "state": {"waiting": {"reason": reason, "message": message}}}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"phase": "Pending", key: [entry]}


def unschedulable(message: str) -> dict[str, Any]:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    return {"phase": "Pending", "conditions": [{**condition, "message": message}]}


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Pending"},
        waiting("ContainerCreating"),
        waiting("PodInitializing", init=True),
        {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {}}}]},
        {**waiting("CrashLoopBackOff", "back-off"), "phase": "Failed"},  # over: no longer stuck
        {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    ],
)
def test_a_pod_on_its_normal_way_has_no_problem(status: dict[str, Any]) -> None:
    assert pod_problem(pod(status)) is None


def test_a_missing_secret_names_the_field_that_refers_to_it() -> None:
    problem = pod_problem(pod(waiting("CreateContainerConfigError", 'secret "s3-creds" not found')))
    assert problem == PodProblem(
        "mnist-worker-0", "CreateContainerConfigError", 'secret "s3-creds" not found', "trainer"
    )
    blocker = explain(problem, "ml", {"s3-creds": "spec.dataset.secretRef"})
    assert blocker.reason == "SecretNotFound"
    assert "Secret 's3-creds' does not exist in namespace 'ml'" in blocker.message
    assert blocker.message.endswith("create it or change spec.dataset.secretRef")
    # A Secret the spec does not name (a source's) says where it comes from instead.
    other = explain(problem, "ml", {}, "the source's spec.output.secretRef")
    assert other.message.endswith("change the source's spec.output.secretRef")


def test_an_init_container_stuck_comes_first() -> None:
    status = waiting("ImagePullBackOff", 'Back-off pulling image "triton:bad"', init=True)
    status["containerStatuses"] = waiting("CreateContainerConfigError", "x")["containerStatuses"]
    problem = pod_problem(pod(status))
    assert problem is not None and problem.reason == "ImagePullBackOff"
    blocker = explain(problem, "ml", {})
    assert blocker.reason == "ImagePullBackOff"
    assert "triton:bad" in blocker.message and "pull secrets" in blocker.message


def test_a_crash_loop_says_how_to_read_the_logs() -> None:
    problem = pod_problem(pod(waiting("CrashLoopBackOff", "back-off 40s restarting")))
    assert problem is not None
    assert (
        "kubectl logs -n ml mnist-worker-0 -c trainer --previous"
        in explain(problem, "ml", {}).message
    )


def test_the_schedulers_reasons_are_reported() -> None:
    claim = pod_problem(
        pod(unschedulable('0/3 nodes are available: persistentvolumeclaim "data" not found.'))
    )
    assert claim is not None
    assert explain(claim, "ml", {}).reason == "VolumeNotFound"
    room = pod_problem(pod(unschedulable("0/3 nodes are available: 3 Insufficient cpu.")))
    assert room is not None
    blocker = explain(room, "ml", {})
    assert (blocker.reason, blocker.phase) == ("Unschedulable", "Pending")
    assert "3 Insufficient cpu" in blocker.message and "spec.resources" in blocker.message


def test_the_owner_annotation_round_trips_and_refuses_what_is_not_lepton() -> None:
    assert owner_from_annotation({OWNER_ANNOTATION: "LeptonEndpoint/a.b"}) == (
        "LeptonEndpoint",
        "a.b",
    )
    assert owner_from_annotation({OWNER_ANNOTATION: "Deployment/x"}) is None
    assert owner_from_annotation({OWNER_ANNOTATION: "LeptonEndpoint/"}) is None
    assert owner_from_annotation({}) is None


def test_the_store_reports_a_change_only_when_the_owners_problem_changes() -> None:
    store = StuckPods()
    owner = ("LeptonTrainingJob", "ml", "mnist")
    b_stuck = PodProblem("b", "ImagePullBackOff", "x", "trainer")
    a_stuck = PodProblem("a", "CrashLoopBackOff", "y", "trainer")
    assert store.record(owner, "b", b_stuck)
    assert not store.record(owner, "b", b_stuck)  # the same again: nothing to publish
    assert store.record(owner, "a", a_stuck)  # "a" sorts first: it is what the owner says
    assert not store.record(owner, "b", None)  # "b" cleared, "a" still reported
    assert store.first(owner) == a_stuck
    assert store.record(owner, "a", None)
    assert store.first(owner) is None
    assert not store.record(owner, "c", None)  # nothing known, nothing changes


def test_a_job_with_a_stuck_pod_says_why_and_recovers_once_it_starts() -> None:
    created = (ObservedCondition("Created", "True", "Created", "created"),)
    problem = pod_problem(pod(waiting("CreateContainerConfigError", 'secret "creds" not found')))
    assert problem is not None
    stuck = explain(problem, "ml", {"creds": "spec.output.secretRef"})
    observed = JobObservation(
        pytorchjob_exists=True, pytorchjob_conditions=created, stuck_pod=stuck
    )
    core = derive_job_core([], 1, observed, T0)
    ready = next(c for c in core.conditions if c.type == "Ready")
    assert (core.phase, ready.status, ready.reason) == ("Pending", "False", "SecretNotFound")
    assert "spec.output.secretRef" in core.message
    after = derive_job_core(
        core.conditions,
        1,
        JobObservation(pytorchjob_exists=True, pytorchjob_conditions=created),
        T0,
    )
    assert next(c for c in after.conditions if c.type == "Ready").status == "True"


def test_an_endpoint_short_of_replicas_says_which_pod_cannot_start() -> None:
    problem = pod_problem(pod(waiting("ErrImagePull", "not found"), name="mnist-7d9-abc"))
    assert problem is not None
    observed = DeploymentObservation(
        exists=True, desired_replicas=2, ready_replicas=1, stuck_pod=explain(problem, "ml", {})
    )
    core = derive_endpoint_core([], 1, observed, T0)
    assert core.message.startswith("1/2 replicas ready; pod mnist-7d9-abc")
    assert next(c for c in core.conditions if c.type == "Ready").reason == "ErrImagePull"
    # Every replica ready: whatever a pod said before is no longer the endpoint's news.
    served = DeploymentObservation(
        exists=True, desired_replicas=2, ready_replicas=2, updated_replicas=2,
        stuck_pod=explain(problem, "ml", {}),
    )  # fmt: skip
    assert derive_endpoint_core([], 1, served, T0).message == "2/2 replicas ready"


def test_a_refused_pod_is_explained_by_what_refused_it() -> None:
    security = explain_refusal(
        'pods "mnist-worker-0" is forbidden: violates PodSecurity "restricted:latest": '
        "allowPrivilegeEscalation != false"
    )
    assert security.reason == "PodSecurityViolation" and "Restricted namespaces" in security.message
    quota = explain_refusal('pods "x" is forbidden: exceeded quota: q, requested: requests.cpu=2')
    assert quota.reason == "QuotaExceeded" and "ResourceQuota" in quota.message
    assert explain_refusal("admission webhook denied the request").reason == "PodsRefused"


def test_the_newest_create_outcome_wins_whatever_order_the_events_arrive_in() -> None:
    store = RefusedPods()
    child = ("PyTorchJob", "ml", "mnist")
    t1, t2 = T0, T0.replace(minute=1)
    assert not store.record(child, Outcome(t1, None))  # created, never refused: not kept
    assert store.record(child, Outcome(t2, "exceeded quota"))
    assert not store.record(child, Outcome(t1, None))  # an older success arrives late
    assert store.refusal(child) == "exceeded quota"
    assert not store.record(child, Outcome(t2, "exceeded quota"))
    assert store.record(child, Outcome(t2, None))  # at the same time a success wins
    assert store.refusal(child) is None
    assert not store.record(child, Outcome(t2, "exceeded quota"))


def test_a_create_event_is_read_with_its_time_and_refusal() -> None:
    refused = CreateEvent.model_validate({
        "involvedObject": {"kind": "PyTorchJob", "namespace": "ml", "name": "mnist"},
        "reason": "FailedCreatePod",
        "message": "exceeded quota",
        "lastTimestamp": "2026-11-26T10:00:00Z",
    })  # fmt: skip
    assert refused.is_create_outcome and refused.refusal == "exceeded quota"
    assert refused.at == T0
    created = CreateEvent.model_validate({
        "involvedObject": {"kind": "ReplicaSet"}, "reason": "SuccessfulCreate",
        "eventTime": "2026-11-26T10:00:00.000001Z",
    })  # fmt: skip
    assert created.is_create_outcome and created.refusal is None and created.at > T0
    assert not CreateEvent.model_validate({"involvedObject": {"kind": "Pod"}}).is_create_outcome
