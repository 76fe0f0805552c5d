"""What a job reports from Kueue's Workload (scheduling/kueue.py, services/kueue_workloads.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lepton_operator.scheduling.kueue import (
    KueueDecision,
    kueue_blocker,
    kueue_decision,
    queue_admission,
    waits_for_kueue,
    workload_state,
)
from lepton_operator.services.kueue_workloads import KueueWorkloads

CREATED = "2026-12-03T10:00:00Z"
RESERVED = "2026-12-03T10:00:42Z"
INSUFFICIENT = (
    "couldn't assign flavors to pod set worker: insufficient quota for nvidia.com/gpu in "
    "flavor lepton-a100, previously considered podsets requests (4) + current podset request "
    "(12) > maximum capacity (8)"
)


def _workload(
    *, reserved: bool | None, owner_kind: str = "PyTorchJob", message: str = ""
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if reserved is not None:
        status["conditions"] = [{
            "type": "QuotaReserved",
            "status": "True" if reserved else "False",
            "reason": "QuotaReserved" if reserved else "Pending",
            "message": message or ("Quota reserved in ClusterQueue lepton" if reserved else ""),
            "lastTransitionTime": RESERVED,
        }]  # fmt: skip
    if reserved:
        status["admission"] = {"clusterQueue": "lepton", "podSetAssignments": []}
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": "pytorchjob-mnist-1a2b3",
            "namespace": "team-a",
            "creationTimestamp": CREATED,
            "ownerReferences": [
                {"kind": owner_kind, "name": "mnist", "uid": "u1", "controller": True}
            ],
        },
        "spec": {"queueName": "team", "podSets": []},
        "status": status,
    }


def test_an_admitted_workload_says_which_queues_and_how_long_it_waited() -> None:
    state = workload_state(_workload(reserved=True))
    assert state is not None
    assert (state.namespace, state.job_name) == ("team-a", "mnist")
    admission = queue_admission(state)
    assert admission is not None
    assert (admission.local_queue, admission.cluster_queue) == ("team", "lepton")
    assert admission.admitted_at == datetime(2026, 12, 3, 10, 0, 42, tzinfo=UTC)
    assert admission.waited_seconds == 42
    assert kueue_blocker("team", state) is None


def test_a_pending_workload_queues_the_job_with_kueues_own_words() -> None:
    state = workload_state(_workload(reserved=False, message=INSUFFICIENT))
    assert queue_admission(state) is None
    blocker = kueue_blocker("team", state)
    assert blocker is not None
    assert (blocker.phase, blocker.reason) == ("Queued", "Pending")
    assert blocker.message == f"Kueue: {INSUFFICIENT}"


def test_no_workload_yet_says_what_to_check() -> None:
    blocker = kueue_blocker("team", None)
    assert blocker is not None
    assert blocker.phase == "Queued"
    assert "'team'" in blocker.message and "Kueue" in blocker.message


def test_a_workload_kueue_has_not_looked_at_yet_waits_without_a_message() -> None:
    blocker = kueue_blocker("team", workload_state(_workload(reserved=None)))
    assert blocker is not None
    assert blocker.message == "Kueue: no quota reserved yet"


def test_workloads_of_other_kinds_are_not_lepton_s() -> None:
    assert workload_state(_workload(reserved=True, owner_kind="Job")) is None


@pytest.mark.parametrize(
    ("pytorchjob", "waits"),
    [
        (None, True),
        ({"spec": {"runPolicy": {"suspend": True}}}, True),
        ({"spec": {"runPolicy": {"suspend": False}}}, False),
        ({"spec": {}}, False),
    ],
)
def test_a_job_waits_for_kueue_while_its_pytorchjob_is_missing_or_suspended(
    pytorchjob: dict[str, Any] | None, waits: bool
) -> None:
    assert waits_for_kueue(pytorchjob) is waits


def test_the_store_reports_changes_only() -> None:
    store = KueueWorkloads()
    pending = workload_state(_workload(reserved=False, message=INSUFFICIENT))
    admitted = workload_state(_workload(reserved=True))
    key = ("team-a", "mnist")
    assert store.record(key, pending) is True
    assert store.record(key, pending) is False  # a resync: nothing to refresh
    assert store.record(key, admitted) is True
    assert store.get(key) == admitted
    assert store.record(key, None) is True
    assert store.get(key) is None
    assert store.record(key, None) is False


def test_a_suspended_job_waits_and_drops_an_admission_kueue_took_back() -> None:
    pending = workload_state(_workload(reserved=False, message=INSUFFICIENT))
    before = queue_admission(workload_state(_workload(reserved=True)))
    suspended = {"spec": {"runPolicy": {"suspend": True}}}
    decision = kueue_decision("team", suspended, pending, before)
    assert decision.blocker is not None and decision.blocker.phase == "Queued"
    assert decision.admission is None


def test_a_running_job_keeps_what_admitted_it_once_the_workload_gave_its_quota_back() -> None:
    before = queue_admission(workload_state(_workload(reserved=True)))
    running = {"spec": {"runPolicy": {"suspend": False}}}
    released = workload_state(_workload(reserved=False, message="Workload finished"))
    assert kueue_decision("team", running, released, before) == KueueDecision(None, before)
    assert kueue_decision("team", running, None, None) == KueueDecision(None, None)
