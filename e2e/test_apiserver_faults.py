"""Faults of the control plane under a running operator: kube-apiserver and etcd restart mid-run,
watches expire (410 Gone), other clients write the same objects (409 Conflict for them).

The operator (the real one, a process of its own) is never restarted: it must reconnect, list
again where its watches expired, and converge. Each job applied before, during (as soon as
the API server answers again) and after a restart ends Succeeded with exactly one PyTorchJob,
and a GPU job queued behind a full pool is admitted once the pool frees after the restart,
which only the operator's own watch-fed view (services/informer.py, cluster_view.py) can tell
it.

Restarting components would break every other test on the session's cluster, so this module
starts a throwaway second control plane in a temporary state directory (as
test_cluster_faults.py does) and never touches the session's. The operator authenticates as
a ServiceAccount bound through RBAC, as it does in a real cluster: the admin certificate is in
system:masters, which skips authorization, and the API server's authorizer and token
authenticator restart too.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from e2e import cluster
from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import (
    GROUP,
    PLURALS,
    TRAIN_SUMMARY,
    VERSION,
    condition,
    create,
    get,
    install_crds,
    pipeline,
    wait_for_phase,
)
from e2e.test_admission import A100, pytorchjob, running_pods_on, training_job
from e2e.test_chart_rbac import _service_account_kubeconfig
from e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

LTJ = PLURALS["LeptonTrainingJob"]
OPERATOR_NAMESPACE = "lepton-system"
# Long enough that requests in flight fail and every watch breaks, as in a real restart.
DOWNTIME_SECONDS = 5.0
JOBS_PER_PHASE = 3  # the sample: 2 workers x 1 GPU, done 2 s after its pods start
# Log records with a traceback of an exception that was caught and is retried: a Kopf change
# handler that raised while the API server was away, and the admission owner's own catches
# (services/admission.py: a status it could not publish, a pass that failed).
CAUGHT_AND_RETRIED = re.compile(
    r"(Handler '[^']+' failed with an exception\. Will retry\."
    r"|Handler '[^']+' failed with an exception and will try again in [\d.]+ seconds: .*"
    r"|not published; retried|admission pass failed; the next change retries it)$"
)
LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@dataclass(frozen=True)
class FaultsCluster:
    """The throwaway control plane: its admin client, and the operator's own kubeconfig."""

    api: ApiClient
    operator_kubeconfig: Path

    @property
    def custom(self) -> Any:
        return CustomObjectsApi(self.api)

    @property
    def core(self) -> Any:
        return CoreV1Api(self.api)


@pytest.fixture(scope="module")
def faults_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultsCluster]:
    state = tmp_path_factory.mktemp("faults") / "cluster"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster, "STATE_DIR", state)
        patch.setattr(cluster, "KUBECONFIG", state / "kubeconfig")
        patch.setenv("KUBECONFIG", str(state / "kubeconfig"))  # for kubectl in install_crds
        try:
            cluster.up()
            install_crds()
            api = cluster.api_client(state / "kubeconfig")
            try:
                token = _operator_token(api)
                kubeconfig = state / "operator.kubeconfig"
                _service_account_kubeconfig(state / "kubeconfig", token, kubeconfig)
                yield FaultsCluster(api, kubeconfig)
            finally:
                api.close()  # type: ignore[no-untyped-call]
        finally:
            cluster.down(quiet=True, keep_logs=True)  # logs stay in the tmp dir for a reader


def _operator_token(api: ApiClient) -> str:
    """A ServiceAccount with cluster-admin through a ClusterRoleBinding (RBAC decides each call;
    the chart's narrower role is test_chart_rbac.py's subject)."""
    core: Any = CoreV1Api(api)
    rbac: Any = RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
    core.create_namespaced_service_account(
        OPERATOR_NAMESPACE, {"metadata": {"name": "lepton-operator"}}
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "lepton-operator-e2e-faults"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": "lepton-operator",
                    "namespace": OPERATOR_NAMESPACE,
                }
            ],
        }
    )
    request = {"spec": {"expirationSeconds": 3600}}
    token: str = core.create_namespaced_service_account_token(
        "lepton-operator", OPERATOR_NAMESPACE, request
    ).status.token
    return token


@pytest.fixture
def namespace(faults_cluster: FaultsCluster) -> Iterator[str]:
    """A namespace with the sample's claims; its pods are gone before the next test starts."""
    core = faults_cluster.core
    name = f"faults-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: core.list_namespaced_service_account(name).items,
    )
    volumes = create_bound_claims(core, name)
    try:
        yield name
    finally:
        core.delete_namespace(name)
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        wait_until(f"pods of {name} deleted", lambda: not core.list_namespaced_pod(name).items)
        for volume in volumes:
            core.delete_persistent_volume(volume)


def start_operator(faults: FaultsCluster, log_name: str) -> OperatorProcess:
    operator = OperatorProcess(faults.operator_kubeconfig, log_name=log_name)
    # Beside the throwaway cluster's logs (kept after the module for a reader), not in the
    # session cluster's, which that cluster's `down` deletes.
    operator.log_path = cluster.STATE_DIR / "logs" / f"{log_name}.log"
    return operator.start()


# ------------------------------------------------------------------ what every test checks


def sample_job(name: str) -> dict[str, Any]:
    job = pipeline()[0]
    job["metadata"] = {"name": name}
    return job


def all_succeeded(custom: Any, namespace: str, names: list[str]) -> None:
    def phases() -> dict[str, str]:
        jobs = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, LTJ)["items"]
        return {j["metadata"]["name"]: j.get("status", {}).get("phase", "none") for j in jobs}

    wait_until(
        f"all {len(names)} jobs Succeeded",
        lambda: all(phases().get(n) == "Succeeded" for n in names),
        timeout=300,
        interval=2,
        describe_state=lambda: {n: p for n, p in phases().items() if p != "Succeeded"},
    )


def assert_one_pytorchjob_and_one_gang_each(
    custom: Any, core: Any, namespace: str, workers: dict[str, int]
) -> None:
    """Each job has exactly one PyTorchJob, owned by it, and each worker ran exactly once."""
    children = custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")
    owners = sorted(
        ref["name"]
        for child in children["items"]
        for ref in child["metadata"].get("ownerReferences", [])
        if ref.get("controller")
    )
    assert owners == sorted(workers), "each job has exactly one PyTorchJob"
    per_job: dict[str, int] = {}
    for pod in core.list_namespaced_pod(namespace).items:
        job_name = pod.metadata.labels["training.kubeflow.org/job-name"]
        per_job[job_name] = per_job.get(job_name, 0) + 1
    # A gang admitted twice (or a PyTorchJob made twice) would start more pods than workers.
    assert per_job == workers


def escaped_tracebacks(log: Path) -> list[str]:
    """Tracebacks in the operator's log of exceptions that nothing caught to retry.

    A change handler that raised while the API server was away is Kopf's to retry, and Kopf
    logs it with its traceback ("... failed with an exception. Will retry."); the admission
    owner logs what it catches and retries the same way: expected during an outage. Anything
    else with a traceback (a thread that died, an asyncio task, Kopf's own machinery, an event
    handler whose failure Kopf only ignores) escaped.
    """
    records: list[list[str]] = [[]]
    for line in log.read_text(errors="replace").splitlines():
        if LOG_RECORD.match(line):
            records.append([line])
        else:
            records[-1].append(line)
    return [
        "\n".join(record)
        for record in records
        if any("Traceback (most recent call last)" in line for line in record)
        and not (record and CAUGHT_AND_RETRIED.search(record[0]))
    ]


def assert_same_operator_and_no_escaped_tracebacks(operator: OperatorProcess, pid: int) -> None:
    assert operator.pid == pid
    status = Path(f"/proc/{pid}/status").read_text()
    assert "State:\tZ" not in status, f"the operator exited; see {operator.log_path}"
    with urllib.request.urlopen(
        f"http://127.0.0.1:{operator.health_port}/healthz", timeout=5
    ) as response:
        assert response.status == 200
    escaped = escaped_tracebacks(operator.log_path)
    assert escaped == [], "\n\n".join(escaped)


def finish_pods(core: Any, namespace: str, job: str) -> None:
    """Report the job's containers as exited 0 with the runtime's summary, as its kubelet would.

    kwok keeps the filler's pods running (its run duration is 10 minutes): capacity frees
    exactly when the test says so, after the restart, never by luck of timing before it.
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    selector = f"training.kubeflow.org/job-name={job}"
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        terminated = {
            "exitCode": 0,
            "reason": "Completed",
            "message": TRAIN_SUMMARY.model_dump_json(by_alias=True),
            "startedAt": now,
            "finishedAt": now,
        }
        statuses = [
            {"name": c.name, "image": c.image, "ready": False, "restartCount": 0,
             "started": False, "state": {"terminated": terminated}}
            for c in pod.spec.containers
        ]  # fmt: skip
        ready_false = {"status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
        body = {
            "status": {
                "phase": "Succeeded",
                "conditions": [
                    {"type": "Ready", **ready_false},
                    {"type": "ContainersReady", **ready_false},
                ],
                "containerStatuses": statuses,
            }
        }
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, body)


# ------------------------------------------------------------------ etcd's history


def _etcd(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """etcd's v3 API over its JSON gateway (no etcdctl is built)."""
    port = json.loads((cluster.STATE_DIR / "ports.json").read_text())["etcd-client"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def compact_etcd() -> int:
    """Drop etcd's whole history up to now (what kube-apiserver itself does every 5 minutes);
    returns the revision compacted to."""
    key = base64.b64encode(b"/registry").decode()
    revision = int(_etcd("/v3/kv/range", {"key": key, "limit": 1})["header"]["revision"])
    _etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_jobs_across_a_restart_converge_without_restarting_the_operator(
    faults_cluster: FaultsCluster, namespace: str, component: str
) -> None:
    custom, core = faults_cluster.custom, faults_cluster.core
    operator = start_operator(faults_cluster, f"lepton-operator-faults-{component}")
    try:
        pid = operator.pid
        # a100 full (4 x 8, kept running); a gang pinned to a100 waits behind it.
        create(custom, namespace, training_job("filler", 4, 8, gpu_type=A100, keep_running=True))
        running_pods_on(core, namespace, "filler", 4)
        create(custom, namespace, training_job("behind", 2, 8, gpu_type=A100))
        queued = wait_for_phase(custom, "LeptonTrainingJob", namespace, "behind", "Queued")
        ready = condition(queued, "Ready")
        assert ready is not None and ready["reason"] == "InsufficientGPUs"

        before = [f"before-{i}" for i in range(JOBS_PER_PHASE)]
        for name in before:  # still being reconciled and admitted when the restart begins
            create(custom, namespace, sample_job(name))
        if component == "etcd":
            # With its history compacted, the API server's caches cannot resume their etcd
            # watches where they were: they list again and end every watch on them, and the
            # operator's watches come back to versions that have expired (410 Gone).
            compact_etcd()
        cluster.restart(component, downtime_seconds=DOWNTIME_SECONDS)

        during = [f"during-{i}" for i in range(JOBS_PER_PHASE)]
        for name in during:  # the API server has just answered /readyz again
            create(custom, namespace, sample_job(name))

        # Capacity frees only now: the operator's view must have recovered to see it.
        finish_pods(core, namespace, "filler")
        behind = wait_until(
            "the queued gang admitted once a100 freed",
            lambda: pytorchjob(custom, namespace, "behind"),
            timeout=180,
            describe_state=lambda: get(custom, "LeptonTrainingJob", namespace, "behind")["status"],
        )
        assert behind["metadata"]["labels"]["lepton.ai/pool"] == "a100"

        after = [f"after-{i}" for i in range(JOBS_PER_PHASE)]
        for name in after:
            create(custom, namespace, sample_job(name))

        samples = [*before, *during, *after]
        all_succeeded(custom, namespace, ["filler", "behind", *samples])
        assert_one_pytorchjob_and_one_gang_each(
            custom, core, namespace, {"filler": 4, "behind": 2} | dict.fromkeys(samples, 2)
        )
        assert_same_operator_and_no_escaped_tracebacks(operator, pid)
        if component == "etcd":
            log = operator.log_path.read_text(errors="replace")
            assert re.search(r"watch of \w+ expired \(.*\); listing again", log), (
                "no informer saw its watch expire: the 410 path was not exercised"
            )
    finally:
        operator.stop()


def test_a_concurrent_writer_meets_conflicts_and_every_job_still_ends_consistent(
    faults_cluster: FaultsCluster, namespace: str
) -> None:
    """Another client (GitOps tooling, an auditor) updates the jobs' labels and status with
    optimistic concurrency while the operator reconciles them: its stale writes get 409 and
    retry, the operator's own writes (merge patches, server-side apply) never conflict."""
    custom, core = faults_cluster.custom, faults_cluster.core
    names = [f"contended-{i}" for i in range(4)]
    outcomes = {"written": 0, "conflict": 0}
    stop = threading.Event()

    def write(name: str, touch: int) -> None:
        job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, LTJ, name)
        job["metadata"].setdefault("labels", {})["e2e.lepton.ai/writer"] = str(touch)
        for replace in (
            custom.replace_namespaced_custom_object,
            custom.replace_namespaced_custom_object_status,
        ):
            try:
                job = replace(GROUP, VERSION, namespace, LTJ, name, job)
                outcomes["written"] += 1
            except ApiException as error:
                if error.status != 409:
                    raise
                outcomes["conflict"] += 1
                return  # read again next round, as a well-behaved client does

    def writer() -> None:
        touch = 0
        while not stop.is_set():
            for name in names:
                touch += 1
                try:
                    write(name, touch)
                except ApiException as error:
                    if error.status != 404:  # not created yet
                        raise

    operator = start_operator(faults_cluster, "lepton-operator-faults-writer")
    writing = threading.Thread(target=writer, daemon=True)
    try:
        pid = operator.pid
        writing.start()
        for name in names:
            create(custom, namespace, sample_job(name))
        all_succeeded(custom, namespace, names)
        stop.set()
        writing.join(timeout=60)
        assert not writing.is_alive()

        assert outcomes["written"] > 0
        print(f"concurrent writer: {outcomes}")  # how much it raced (not asserted: timing)
        all_succeeded(custom, namespace, names)  # the writer's last writes changed nothing
        for name in names:
            job = get(custom, "LeptonTrainingJob", namespace, name)
            assert "e2e.lepton.ai/writer" in job["metadata"]["labels"], "its label is kept"
            ready = condition(job, "Ready")
            assert ready is not None and ready["status"] == "True", job["status"]
            assert job["status"]["results"]["accuracy"] == TRAIN_SUMMARY.accuracy
        assert_one_pytorchjob_and_one_gang_each(custom, core, namespace, dict.fromkeys(names, 2))
        assert_same_operator_and_no_escaped_tracebacks(operator, pid)
        log = operator.log_path.read_text(errors="replace")
        assert "Conflict" not in log and "(409)" not in log, "the operator met a conflict"
    finally:
        stop.set()
        operator.stop()


def foreign_pytorchjob(name: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    """Someone else's PyTorchJob, suspended (it never starts pods), maybe with a controller."""
    metadata: dict[str, Any] = {"name": name, "labels": {"team": "someone-else"}}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    container = {"name": "pytorch", "image": "registry.example/someone-else:1"}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": {
            "runPolicy": {"suspend": True},
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": "OnFailure",
                    "template": {"spec": {"containers": [container]}},
                }
            },
        },
    }


@pytest.mark.parametrize("controlled", [True, False], ids=["someone-elses", "nobodys"])
def test_a_pytorchjob_of_the_same_name_that_is_not_the_jobs_is_never_taken_over(
    faults_cluster: FaultsCluster, namespace: str, controlled: bool
) -> None:
    custom, core = faults_cluster.custom, faults_cluster.core
    other = core.create_namespaced_config_map(namespace, {"metadata": {"name": "other-owner"}})
    owner = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "other-owner",
        "uid": other.metadata.uid,
        "controller": True,
    }
    kubeflow = ("kubeflow.org", "v1", namespace, "pytorchjobs")
    # Without a controller, server-side apply would simply add Lepton's: adopted, unadmitted.
    foreign = foreign_pytorchjob("taken", owner if controlled else None)
    custom.create_namespaced_custom_object(*kubeflow, foreign)
    operator = start_operator(faults_cluster, "lepton-operator-faults-foreign")
    try:
        pid = operator.pid
        create(custom, namespace, sample_job("taken"))

        def refused() -> dict[str, Any] | None:
            job = get(custom, "LeptonTrainingJob", namespace, "taken")
            ready = condition(job, "Ready")
            return ready if ready is not None and ready["reason"] == "ChildConflict" else None

        ready = wait_until("the job says the name is taken", refused)
        expected = "its controller: ConfigMap/other-owner" if controlled else "controller: nobody"
        assert expected in ready["message"], ready["message"]
        theirs = custom.get_namespaced_custom_object(*kubeflow, "taken")
        references = theirs["metadata"].get("ownerReferences") or []
        assert [r["uid"] for r in references] == ([other.metadata.uid] if controlled else [])
        assert "app.kubernetes.io/managed-by" not in theirs["metadata"]["labels"]
        assert theirs["spec"]["runPolicy"]["suspend"] is True, "their spec is theirs"

        # The other owner gives the name up: the job gets a PyTorchJob of its own and runs.
        custom.delete_namespaced_custom_object(*kubeflow, "taken")
        all_succeeded(custom, namespace, ["taken"])
        assert_one_pytorchjob_and_one_gang_each(custom, core, namespace, {"taken": 2})
        assert_same_operator_and_no_escaped_tracebacks(operator, pid)
    finally:
        operator.stop()
