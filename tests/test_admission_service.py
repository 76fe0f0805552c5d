"""The admission queue's owner on a view fed by hand (no API server): one decision at a
time, reservations held across passes until the PyTorchJob shows up, concurrent submits."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from lepton_operator import k8s
from lepton_operator.builders.meta import PRIORITY_ANNOTATION
from lepton_operator.scheduling.admission import GangRequest
from lepton_operator.scheduling.placement import Placement
from lepton_operator.scheduling.preemption import RunningGang
from lepton_operator.scheduling.queue import QueuedGang, QueuedJob
from lepton_operator.services.admission import AdmissionQueue, QueueEntry
from lepton_operator.services.cluster_view import ClusterView
from lepton_operator.services.status_publisher import StatusPublisher
from lepton_operator.settings import OperatorSettings
from lepton_operator.status import Blocker
from tests.test_scheduling import A100, POOL_KEY, node_manifest

CPU_ONLY = Placement(pool=None, node_selector={}, tolerations=())
GPU_TEMPLATE = {
    "spec": {
        "nodeSelector": {POOL_KEY: "a100", "nvidia.com/gpu.product": A100},
        "containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}],
    }
}


class Recorder:
    """What the owner did with each job: children applied (where) and statuses reported."""

    def __init__(self) -> None:
        self.started: dict[str, Placement] = {}
        self.reported: dict[str, list[Blocker]] = {}
        self._lock = threading.Lock()

    def entry(self, name: str, workers: int, gpus: int, second: int = 0) -> QueueEntry:
        job = QueuedJob(f"2026-12-01T10:00:{second:02d}Z", "team", name, "LeptonTrainingJob")
        gang = QueuedGang(job, GangRequest(workers, gpus, gpu_product=A100), queued_at=second)

        def start(placement: Placement) -> None:
            with self._lock:
                self.started[name] = placement

        def report(blocker: Blocker) -> None:
            with self._lock:
                self.reported.setdefault(name, []).append(blocker)

        return QueueEntry(gang, name, start, report, CPU_ONLY, gpu_type=A100)


def a100_nodes(count: int = 4) -> list[dict[str, Any]]:
    labels = {POOL_KEY: "a100", "nvidia.com/gpu.product": A100}
    return [node_manifest(f"a100-{i}", labels, "8") for i in range(count)]


def pytorchjob(name: str, finished: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Succeeded", "status": "True"}] if finished else []
    return {
        "metadata": {"name": name, "namespace": "team", "labels": {"lepton.ai/pool": "a100"}},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 4, "template": GPU_TEMPLATE}}},
        "status": {"conditions": conditions},
    }


def run_pass(queue: AdmissionQueue) -> None:
    """One pass, and the statuses it offered published (the publisher's thread is not run)."""
    queue._pass()
    queue.statuses.flush()


@pytest.fixture
def queue() -> AdmissionQueue:
    # Informers are not started: the test plays the watch, telling the queue what it saw.
    queue = AdmissionQueue(OperatorSettings(), clock=lambda: 100.0)
    queue.observed_list("Node", a100_nodes())
    queue.observed_list("Pod", [])
    queue.observed_list("PyTorchJob", [])
    return queue


def test_three_pool_filling_gangs_submitted_at_once_admit_exactly_one(
    queue: AdmissionQueue,
) -> None:
    recorder = Recorder()
    entries = [recorder.entry(f"g{i}", 4, 8, second=i) for i in range(3)]
    threads = [threading.Thread(target=queue.submit, args=(e,)) for e in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_pass(queue)
    assert list(recorder.started) == ["g0"]
    assert recorder.started["g0"].pool == "a100"
    assert recorder.started["g0"].node_selector[POOL_KEY] == "a100"
    assert [recorder.reported[n][-1].queue_position for n in ("g1", "g2")] == [1, 2]
    assert all(recorder.reported[n][-1].phase == "Queued" for n in ("g1", "g2"))
    assert [job.name for job in queue.queued()] == ["g1", "g2"]


def test_an_admitted_gang_holds_its_gpus_until_its_pytorchjob_is_seen_and_after(
    queue: AdmissionQueue,
) -> None:
    recorder = Recorder()
    queue.submit(recorder.entry("g0", 4, 8))
    run_pass(queue)
    queue.submit(recorder.entry("g1", 4, 8, second=1))
    run_pass(queue)  # g0's PyTorchJob is not in the view yet: its assumed reservation holds
    assert list(recorder.started) == ["g0"]
    queue.observed("PyTorchJob", "ADDED", pytorchjob("g0"))
    run_pass(queue)  # now the PyTorchJob itself reserves the 4 unbound workers
    assert list(recorder.started) == ["g0"]
    queue.observed("PyTorchJob", "MODIFIED", pytorchjob("g0", finished=True))
    run_pass(queue)  # finished: its GPUs are free again, and the next in line starts
    assert list(recorder.started) == ["g0", "g1"]


def test_a_status_is_reported_only_when_it_changes(queue: AdmissionQueue) -> None:
    recorder = Recorder()
    queue.submit(recorder.entry("g0", 4, 8))
    queue.submit(recorder.entry("g1", 4, 8, second=1))
    for _ in range(3):
        run_pass(queue)
    assert len(recorder.reported["g1"]) == 1


def test_a_resubmitted_job_keeps_its_place(queue: AdmissionQueue) -> None:
    recorder = Recorder()
    queue.observed_list("Node", a100_nodes(count=1))
    for name, second in (("old", 0), ("new", 5)):
        queue.submit(recorder.entry(name, 2, 8, second=second))
    queue.submit(recorder.entry("old", 2, 8, second=0))  # a retry of the same job
    run_pass(queue)
    assert [job.name for job in queue.queued()] == ["old", "new"]


def test_without_read_access_jobs_go_to_kube_scheduler(queue: AdmissionQueue) -> None:
    recorder = Recorder()
    queue.refused = "list Node: Forbidden"
    queue.submit(recorder.entry("g0", 4, 8))
    queue.submit(recorder.entry("g1", 4, 8))
    run_pass(queue)
    assert recorder.started == {"g0": CPU_ONLY, "g1": CPU_ONLY}


def test_a_pytorchjob_seen_and_gone_between_passes_leaves_no_reservation(
    queue: AdmissionQueue,
) -> None:
    recorder = Recorder()
    queue.submit(recorder.entry("g0", 4, 8))
    run_pass(queue)
    # Its PyTorchJob appears and is deleted while nothing is queued (no pass runs).
    queue.observed("PyTorchJob", "ADDED", pytorchjob("g0"))
    queue.observed("PyTorchJob", "DELETED", pytorchjob("g0"))
    queue.submit(recorder.entry("g1", 4, 8, second=1))
    run_pass(queue)
    assert list(recorder.started) == ["g0", "g1"]


def test_a_job_enqueued_again_after_it_was_admitted_leaves_the_queue(
    queue: AdmissionQueue,
) -> None:
    recorder = Recorder()
    queue.submit(recorder.entry("g0", 4, 8))
    run_pass(queue)
    queue.submit(recorder.entry("g0", 4, 8))  # its handler ran again (at least once)
    run_pass(queue)
    assert list(recorder.started) == ["g0"]
    assert queue.queued() == []
    assert "g0" not in recorder.reported  # never told it waits: it runs


def test_children_the_api_server_refuses_back_off_and_free_the_pass(
    queue: AdmissionQueue,
) -> None:
    recorder = Recorder()
    refused = recorder.entry("refused", 4, 8)

    def refuse(placement: Placement) -> None:
        raise RuntimeError("namespace is being terminated")

    refused.start = refuse
    queue.submit(refused)
    queue.submit(recorder.entry("next", 4, 8, second=1))
    run_pass(queue)  # "refused" is admitted, its apply fails: the pass stops there
    assert recorder.started == {}
    assert [b.reason for b in recorder.reported["refused"]] == ["ChildrenRejected"]
    run_pass(queue)  # decided again without it: the next job gets the GPUs
    assert list(recorder.started) == ["next"]
    assert [job.name for job in queue.queued()] == ["refused"]


def test_pool_gauges_show_what_is_reserved_and_what_is_fragmented(queue: AdmissionQueue) -> None:
    recorder = Recorder()
    busy = pod_on("a100-0", gpus=2)
    queue.observed("Pod", "ADDED", busy)
    queue.submit(recorder.entry("g0", 2, 8))
    queue.submit(recorder.entry("g1", 4, 8, second=1))  # does not fit beside g0: waits
    run_pass(queue)

    def gauge(state: str) -> float | None:
        labels = {"pool": "a100", "gpu_product": A100, "state": state}
        return REGISTRY.get_sample_value("lepton_pool_gpus", labels)

    assert (gauge("capacity"), gauge("allocated")) == (32, 2)
    assert gauge("reserved") == 16  # g0, admitted, its pods not bound yet
    assert gauge("free") == 32 - 2 - 16
    assert gauge("fragmented") == 6  # free on a100-0, which a 2-GPU pod already uses
    assert REGISTRY.get_sample_value("lepton_admission_queue_length", {"pool": "auto"}) == 1


def pod_on(node_name: str, gpus: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"other-{node_name}", "namespace": "other"},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running"},
    }


# --------------------------------------------------------------------------- preemption


def running_job(name: str, priority: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Lepton PyTorchJob of 4 x 8 GPUs, running on all of a100, and its pods."""
    job = pytorchjob(name)
    job["metadata"]["ownerReferences"] = [
        {"kind": "LeptonTrainingJob", "name": name, "controller": True}
    ]
    job["metadata"]["annotations"] = {PRIORITY_ANNOTATION: str(priority)}
    job["metadata"]["creationTimestamp"] = "2026-12-01T09:00:00Z"
    job["status"]["conditions"] = [{"type": "Running", "status": "True"}]
    pods = []
    for index in range(4):
        pod = pod_on(f"a100-{index}", gpus=8)
        pod["metadata"] = {
            "name": f"{name}-{index}",
            "namespace": "team",
            "labels": {"training.kubeflow.org/job-name": name},
        }
        pods.append(pod)
    return job, pods


def preempting_queue(enabled: bool) -> tuple[AdmissionQueue, list[tuple[str, str]]]:
    evicted: list[tuple[str, str]] = []

    def evict(victim: RunningGang, by: QueuedGang) -> None:
        evicted.append((victim.owner_name, by.job.name))

    config = OperatorSettings(admission_preemption=enabled)
    queue = AdmissionQueue(config, clock=lambda: 100.0, evict=evict)
    queue.observed_list("Node", a100_nodes())
    job, pods = running_job("low", priority=0)
    queue.observed_list("Pod", pods)
    queue.observed_list("PyTorchJob", [job])
    return queue, evicted


def urgent_gang_submitted(
    preemption: bool,
) -> tuple[AdmissionQueue, list[tuple[str, str]], Recorder]:
    """a100 full of job "low" (priority 0); "high" (1000, all of a100) submitted, one pass."""
    queue, evicted = preempting_queue(enabled=preemption)
    recorder = Recorder()
    high = recorder.entry("high", 4, 8, second=5)
    high.gang = replace(high.gang, priority=1000)
    queue.submit(high)
    run_pass(queue)
    return queue, evicted, recorder


def test_a_higher_priority_gang_evicts_a_whole_job_once_and_starts_when_it_is_gone() -> None:
    queue, evicted, recorder = urgent_gang_submitted(preemption=True)
    assert evicted == [("low", "high")]
    assert recorder.reported["high"][-1].reason == "Preempting"
    run_pass(queue)  # the victim's pods are still there: no second eviction
    assert evicted == [("low", "high")]
    assert recorder.started == {}
    job, pods = running_job("low", priority=0)
    queue.observed("PyTorchJob", "DELETED", job)
    for pod in pods:
        queue.observed("Pod", "DELETED", pod)
    run_pass(queue)
    assert list(recorder.started) == ["high"]


def test_without_the_setting_nothing_is_preempted() -> None:
    _, evicted, recorder = urgent_gang_submitted(preemption=False)
    assert evicted == []
    assert recorder.reported["high"][-1].reason == "InsufficientGPUs"


# --------------------------------------------------------------------------- endpoints


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "team",
            "labels": {"lepton.ai/pool": "a100", "lepton.ai/endpoint": name},
        },
        "spec": {"replicas": replicas, "template": GPU_TEMPLATE},
    }


def test_an_endpoint_is_admitted_as_a_gang_and_its_deployment_holds_the_gpus(
    queue: AdmissionQueue,
) -> None:
    recorder = Recorder()
    serve = recorder.entry("serve", 3, 8)
    serve.child_kind = "Deployment"
    queue.observed_list("Deployment", [])
    queue.submit(serve)
    run_pass(queue)
    assert list(recorder.started) == ["serve"]
    queue.observed("Deployment", "ADDED", deployment("serve", replicas=3))
    queue.submit(recorder.entry("train", 2, 8, second=1))
    run_pass(queue)  # 3 unbound replicas of 8 GPUs reserved: one node left, 2 x 8 waits
    assert list(recorder.started) == ["serve"]
    assert recorder.reported["train"][-1].reason == "InsufficientGPUs"
    queue.observed("Deployment", "DELETED", deployment("serve", replicas=3))
    run_pass(queue)
    assert list(recorder.started) == ["serve", "train"]


def test_changes_admission_does_not_read_wake_no_pass() -> None:
    view = ClusterView("nvidia.com/gpu")
    node = a100_nodes(count=1)[0]
    view.replace("Node", [node])
    heartbeat = {**node, "status": {**node["status"], "conditions": [{"type": "Ready"}]}}
    assert view.apply("Node", "MODIFIED", heartbeat) is False
    cordoned = {**node, "spec": {"unschedulable": True}}
    assert view.apply("Node", "MODIFIED", cordoned) is True

    job = pytorchjob("g0")
    view.replace("PyTorchJob", [job])
    running = {"type": "Running", "status": "True", "lastUpdateTime": "2026-12-01T10:00:00Z"}
    started = {**job, "status": {"conditions": [running]}}
    assert view.apply("PyTorchJob", "MODIFIED", started) is True
    later = {**running, "lastUpdateTime": "2026-12-01T10:05:00Z"}
    touched = {**job, "metadata": {**job["metadata"], "resourceVersion": "9"}}
    assert (
        view.apply("PyTorchJob", "MODIFIED", {**touched, "status": {"conditions": [later]}})
        is False
    )
    assert view.apply("PyTorchJob", "DELETED", job) is True


def test_cpu_only_children_are_not_kept_and_wake_no_pass() -> None:
    """A CPU-only job is not admitted and reserves nothing: its PyTorchJob stays out of the
    view (a thousand of them made every pass read a thousand jobs)."""
    view = ClusterView("nvidia.com/gpu")
    cpu_template = {"spec": {"containers": [{"name": "w", "resources": {"requests": {"cpu": 1}}}]}}
    cpu_job = pytorchjob("c0")
    cpu_job["spec"]["pytorchReplicaSpecs"]["Master"]["template"] = cpu_template
    assert view.apply("PyTorchJob", "ADDED", cpu_job) is False
    view.replace("PyTorchJob", [cpu_job, pytorchjob("g0")])
    kept = view.snapshot().pytorchjobs
    assert [job.metadata.name for job in kept] == ["g0"]
    assert kept[0].gpus() == 4 * kept[0].spec.pytorch_replica_specs["Master"].template.gpus()
    assert kept[0].gpus() > 0


def test_a_position_that_alone_moved_is_published_at_most_every_refresh_interval() -> None:
    now = [100.0]
    config = OperatorSettings(admission_position_refresh_seconds=30)
    queue = AdmissionQueue(config, clock=lambda: now[0])
    queue.observed_list("Node", a100_nodes(count=1))
    queue.observed_list("Pod", [])
    queue.observed_list("PyTorchJob", [])
    recorder = Recorder()
    queue.submit(recorder.entry("running", 1, 8))
    for index in range(3):
        queue.submit(recorder.entry(f"w{index}", 1, 8, second=index + 1))
    run_pass(queue)  # "running" takes the node; w0, w1, w2 wait at 1, 2, 3
    assert [recorder.reported[f"w{i}"][-1].queue_position for i in range(3)] == [1, 2, 3]
    queue.forget(QueuedJob("2026-12-01T10:00:01Z", "team", "w0", "LeptonTrainingJob"))
    now[0] += 5
    run_pass(queue)  # w1 and w2 moved up; too soon to say so
    assert [recorder.reported[f"w{i}"][-1].queue_position for i in (1, 2)] == [2, 3]
    assert queue.statuses.pending() == 2
    now[0] += 30
    queue.statuses.flush()
    assert [recorder.reported[f"w{i}"][-1].queue_position for i in (1, 2)] == [1, 2]


def test_the_owner_and_the_publisher_may_use_a_job_s_context_at_once() -> None:
    recorder = Recorder()
    entry = recorder.entry("g0", 1, 8)
    inside = threading.Event()
    leave = threading.Event()

    def hold(_: Placement) -> None:  # the owner applying children, in the job's context
        inside.set()
        leave.wait(5)

    owner = threading.Thread(target=entry.run, args=(hold, CPU_ONLY))
    owner.start()
    inside.wait(5)
    blocker = Blocker("InsufficientGPUs", "waits")
    entry.publish(blocker, (blocker.reason, blocker.message), 100.0)  # meanwhile, elsewhere
    leave.set()
    owner.join()
    assert recorder.reported["g0"] == [blocker]


def test_a_refusal_reads_as_the_api_server_s_message() -> None:
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = json.dumps({"message": 'configmaps "x" is forbidden: namespace is terminating'})
    assert k8s.server_message(refused) == 'configmaps "x" is forbidden: namespace is terminating'
    refused.body = "x" * 2000  # not JSON: the reason, then
    assert k8s.server_message(refused) == "Forbidden"
    refused.body = json.dumps({"message": "y" * 2000})
    assert len(k8s.server_message(refused)) == 400


def test_moved_positions_go_out_at_a_bounded_rate_front_of_the_queue_first() -> None:
    now = [0.0]
    publisher = StatusPublisher(lambda: now[0], position_refresh_seconds=30, positions_per_second=5)
    recorder = Recorder()
    entries = [recorder.entry(f"w{i:02d}", 1, 8, second=i) for i in range(20)]

    def waiting(position: int) -> Blocker:
        return Blocker("InsufficientGPUs", f"(number {position} of 20 queued)", "Queued", position)

    key = ("InsufficientGPUs", "does not fit")
    for position, entry in enumerate(entries, start=2):  # reported once, one place further back
        entry.publish(waiting(position), key, now[0])
    now[0] = 60.0
    for position, entry in enumerate(entries, start=1):  # everyone moved up a place
        publisher.offer(entry, waiting(position), key)
    publisher.flush()
    moved = [e.gang.job.name for e in entries if e.reported == waiting(entries.index(e) + 1)]
    assert moved == ["w00", "w01", "w02", "w03", "w04"]  # 5 tokens, the front first
    now[0] = 61.0
    publisher.flush()
    assert publisher.pending() == 10
    assert entries[9].reported == waiting(10)
    # A new reason is news: it goes out at once, tokens or not.
    publisher.offer(entries[19], Blocker("NoMatchingPool", "gone", "Queued", 20), ("x", "y"))
    publisher.flush()
    assert entries[19].reported is not None and entries[19].reported.reason == "NoMatchingPool"
